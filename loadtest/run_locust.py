"""`make loadtest`: a short, bounded locust run against a service started here, as `make run` does.

Starts `python -m heartrate_serve.runtime.launcher` with GRPC_PORT/METRICS_PORT on free ports
and DATA_DIR/LOG_DIR in a temp dir, waits for "SERVING on", then runs locust headless:

  python -m locust -f loadtest/locustfile.py --headless -u 20 -r 10 -t 20s \
      --host 127.0.0.1:PORT --csv <tmp>/locust --only-summary

prints the stats summary (and the CSV's aggregated line per request type), SIGTERMs the service and
waits for it. Exits non-zero when any request failed or locust itself failed.

  .venv/bin/python -m heartrate_serve.loadtest.run_locust [-u 20] [-r 10] [-t 20s] [--keep]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from heartrate_serve.loadtest.service import ServiceProcess

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


def locust_command(
    host: str, users: int, rate: float, run_time: str, csv_prefix: Path
) -> list[str]:
    """The headless locust command line."""
    return [
        sys.executable, "-m", "locust",
        "-f", str(LOCUSTFILE),
        "--headless", "-u", str(users), "-r", str(rate), "-t", run_time,
        "--host", host,
        "--csv", str(csv_prefix),
        "--only-summary",
        "--stop-timeout", "5",
    ]  # fmt: skip


def failures_in_csv(stats_csv: Path) -> tuple[int, int]:
    """(requests, failures) of the "Aggregated" row of locust's *_stats.csv."""
    with open(stats_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row["Name"] == "Aggregated":
                return int(row["Request Count"]), int(row["Failure Count"])
    return 0, 0


def main(argv: list[str] | None = None) -> int:
    """Runs the service and locust; returns the exit code."""
    parser = argparse.ArgumentParser(description="make loadtest: locust against a local service")
    parser.add_argument("-u", "--users", type=int, default=20)
    parser.add_argument("-r", "--spawn-rate", type=float, default=10)
    parser.add_argument("-t", "--run-time", default="20s")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (CSV, logs)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="hrs-locust-"))
    service = ServiceProcess(workdir / "service")
    code = 1
    try:
        service.start()
        print(f"starting the service (logs in {workdir / 'service'})", flush=True)
        took = service.wait_serving()
        print(f"service SERVING on {service.target} after {took:.1f} s", flush=True)
        cmd = locust_command(service.target, args.users, args.spawn_rate, args.run_time,
                             workdir / "locust")  # fmt: skip
        print("$ " + " ".join(cmd), flush=True)
        locust_code = subprocess.run(cmd).returncode
        requests, failures = failures_in_csv(workdir / "locust_stats.csv")
        print(f"\nlocust exit {locust_code}: {requests} requests, {failures} failures", flush=True)
        code = 0 if locust_code == 0 and failures == 0 and requests > 0 else 1
    finally:
        stopped = service.stop()
        print(f"service stopped (exit {stopped})", flush=True)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
