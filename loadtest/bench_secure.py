"""TLS + JWT auth against plaintext: the same scenarios on the real service started both ways.

  python -m heartrate_serve.loadtest.bench_secure [--scenarios unary:16,stream:16] [--quick]

Starts the launcher (as `make run`, embedded Redis) plaintext with AUTH_MODE=none, runs the
scenarios with the load generator, stops it; then starts it with TLS_CERT_FILE/TLS_KEY_FILE (a CA
and a server certificate made here) and AUTH_MODE=jwt (the development ES256 key pair), and runs
the same scenarios over TLS with one bearer token per load generator (heartrate:admin: the
generator writes for many users). Prints a markdown table of both and their ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from heartrate_serve.loadtest.bench_runs import Plan, run_loadgen, start_service
from heartrate_serve.loadtest.common import fmt_num, markdown_table, parse_scenarios, ratio
from heartrate_serve.runtime.dev_keys import ensure_dev_keypair, issue_token, write_private_key

DEFAULT_SCENARIOS = "unary:16,unary:64,stream:16,stream:64"


def make_certs(folder: Path) -> tuple[Path, Path, Path]:
    """(ca, server cert, server key) PEM files: a throwaway CA and a cert for 127.0.0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def cert(name: str, key: Any, issuer: str, signer: Any, ca: bool) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    paths = folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"
    paths[0].write_bytes(
        cert("bench CA", ca_key, "bench CA", ca_key, True).public_bytes(serialization.Encoding.PEM)
    )
    paths[1].write_bytes(
        cert("localhost", key, "bench CA", ca_key, False).public_bytes(serialization.Encoding.PEM)
    )
    write_private_key(paths[2], key)
    return paths


def run_mode(label: str, plan: Plan, workdir: Path, env: dict[str, str], extra: list[str]) -> Any:
    """Starts the service with env, runs every scenario, stops it."""
    service, to_serving = start_service(workdir / label, env=env)
    try:
        print(f"{label}: SERVING on {service.target} after {to_serving:.1f} s", flush=True)
        results = {}
        for spec in plan.scenarios:
            out = workdir / f"{label}-{spec.kind}{spec.concurrency}.json"
            res = run_loadgen(service.target, spec, plan, f"sec-{label}", out, extra)
            results[spec.name] = res
            lat = res.get("latency_ms", {})
            print(
                f"  {label:6s} {spec.name:10s} {fmt_num(res.get('throughput', math.nan)):>10s}"
                f" {res.get('unit', '')}  p50 {fmt_num(lat.get('p50_ms'), 2)} ms  p99 "
                f"{fmt_num(lat.get('p99_ms'), 2)} ms  errors {res.get('errors')}",
                flush=True,
            )
        return results
    finally:
        service.stop()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="TLS + JWT against plaintext (see doc)")
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS)
    parser.add_argument("--quick", action="store_true", help="3 s windows")
    parser.add_argument("--json-out", type=Path, help="write both result sets here")
    args = parser.parse_args(argv)
    specs = parse_scenarios(args.scenarios)
    plan = Plan(specs, 3.0 if args.quick else 10.0, 1.0 if args.quick else 2.0, 5.0)
    workdir = Path(tempfile.mkdtemp(prefix="bench-secure-"))
    ca, cert, key = make_certs(workdir / "pki")
    private, public, _ = ensure_dev_keypair(workdir / "keys")
    token_file = workdir / "token"
    token_file.write_text(
        issue_token(private, user="loadgen", scopes=["heartrate:admin"], ttl_s=4 * 3600)
    )
    plain = run_mode("plain", plan, workdir, {"AUTH_MODE": "none"}, [])
    secure_env = {
        "TLS_CERT_FILE": str(cert),
        "TLS_KEY_FILE": str(key),
        "AUTH_MODE": "jwt",
        "AUTH_JWT_PUBLIC_KEY_FILE": str(public),
    }
    secure = run_mode(
        "secure", plan, workdir, secure_env, ["--tls-ca", str(ca), "--token-file", str(token_file)]
    )
    rows = []
    for spec in specs:
        p, s = plain[spec.name], secure[spec.name]
        rows.append(
            [
                spec.name,
                f"{fmt_num(p.get('throughput', math.nan))} {p.get('unit', '')}",
                f"{fmt_num(s.get('throughput', math.nan))} {s.get('unit', '')}",
                f"{ratio(s.get('throughput', math.nan), p.get('throughput', math.nan)):.2f}",
                f"{fmt_num(p.get('latency_ms', {}).get('p50_ms'), 2)} / "
                f"{fmt_num(s.get('latency_ms', {}).get('p50_ms'), 2)}",
                f"{fmt_num(p.get('latency_ms', {}).get('p99_ms'), 2)} / "
                f"{fmt_num(s.get('latency_ms', {}).get('p99_ms'), 2)}",
                f"{p.get('errors')} / {s.get('errors')}",
            ]
        )
    head = ["scenario", "plaintext", "TLS + JWT", "ratio", "p50 ms", "p99 ms", "errors"]
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(markdown_table(head, rows))
    if args.json_out:
        args.json_out.write_text(json.dumps({"plain": plain, "secure": secure}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
