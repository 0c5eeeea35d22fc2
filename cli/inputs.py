"""Input of the `heartrate` client: timestamps and reading lines ('bpm', 'timestamp,bpm', JSON).

Pure functions, apart from `open_input`, which opens the input file or stdin.
"""

from __future__ import annotations

import io
import json
import math
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from heartrate_serve.core.errors import InputError

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# A bare number at least this large is Unix milliseconds, smaller ones are Unix seconds
# (1e11 s is the year 5138; 1e11 ms is 1973, before any real wearable reading).
MS_THRESHOLD = 100_000_000_000
# Readings sent without a timestamp to zones/batch are spaced this far apart (1 Hz).
FILL_STEP_MS = 1000


def now_ms() -> int:
    """The current Unix time in milliseconds."""
    return time.time_ns() // 1_000_000


def number_to_ms(value: float) -> int:
    """A bare number as Unix ms: seconds (fractions allowed), or ms when >= MS_THRESHOLD."""
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"timestamp must be a finite number >= 0, got {value!r}")
    ms = round(value if value >= MS_THRESHOLD else value * 1000)
    if ms > INT64_MAX:
        raise ValueError(f"timestamp too large: {value!r}")
    return ms


def parse_time_ms(text: str) -> int:
    """Unix seconds, Unix milliseconds or ISO 8601 (naive means UTC) as Unix milliseconds."""
    text = text.strip()
    try:
        return number_to_ms(float(text))
    except ValueError:
        if re.fullmatch(r"[-+.\deE]+|nan|inf|-inf", text, re.IGNORECASE):
            raise
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a timestamp: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return number_to_ms(dt.timestamp())


@dataclass(frozen=True)
class Reading:
    """One parsed input reading; timestamp_ms 0 means none given (the server's now)."""

    bpm: int
    timestamp_ms: int = 0


@dataclass(frozen=True)
class BadLine:
    """An input line that could not be parsed, with why."""

    lineno: int
    text: str
    reason: str

    def message(self) -> str:
        """The line as a one-line report."""
        return f"line {self.lineno}: {self.reason}: {self.text!r}"


def parse_bpm(value: object) -> int:
    """A bpm from a string or JSON value: an integer in int32 range (the server checks bands)."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"bpm is not a number: {value!r}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"bpm must be an integer, got {value!r}")
    if not -INT32_MAX <= value <= INT32_MAX:
        raise ValueError(f"bpm out of int32 range: {value}")
    return value


def _json_time_ms(obj: dict[str, Any]) -> int:
    """The timestamp of a JSON reading: timestamp_ms (ms) wins over timestamp (s, ms or ISO)."""
    ms = obj.get("timestamp_ms")
    if ms not in (None, 0):
        if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= INT64_MAX:
            raise ValueError(f"timestamp_ms must be an integer >= 0, got {ms!r}")
        return ms
    ts = obj.get("timestamp")
    if ts is None:
        return 0
    if isinstance(ts, str):
        return parse_time_ms(ts)
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise ValueError(f"timestamp must be a number or ISO 8601 string, got {ts!r}")
    return number_to_ms(float(ts))


def _reading_from_json(text: str) -> Reading:
    """A reading from a JSON object line {"bpm": .., "timestamp": .. | "timestamp_ms": ..}."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg}") from None
    if not isinstance(obj, dict) or "bpm" not in obj:
        raise ValueError('a JSON line must be an object with a "bpm" key')
    return Reading(parse_bpm(obj["bpm"]), _json_time_ms(obj))


def parse_line(line: str) -> Reading | None:
    """One input line: 'bpm', 'timestamp,bpm' or a JSON object; None for blank/# comment lines."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith("{"):
        return _reading_from_json(text)
    fields = (
        [f.strip() for f in re.split(r"[,;]", text)] if re.search(r"[,;]", text) else text.split()
    )
    if "" in fields:
        raise ValueError("empty field")
    if len(fields) == 1:
        return Reading(parse_bpm(fields[0]))
    if len(fields) == 2:
        return Reading(parse_bpm(fields[1]), parse_time_ms(fields[0]))
    raise ValueError(f"expected 'bpm' or 'timestamp,bpm', got {len(fields)} fields")


def is_header(line: str) -> bool:
    """True for a CSV header line such as 'timestamp,bpm' (skipped silently)."""
    text = line.strip().lower()
    return "bpm" in text and re.fullmatch(r"[a-z_\s,;\"']+", text) is not None


def parse_lines(lines: Iterable[str]) -> Iterator[Reading | BadLine]:
    """Readings and bad lines, lazily, in input order; headers, blanks and comments skipped."""
    for lineno, line in enumerate(lines, 1):
        try:
            reading = parse_line(line)
        except (ValueError, OverflowError, RecursionError) as exc:
            if not is_header(line):
                yield BadLine(lineno, line.strip(), str(exc))
            continue
        if reading is not None:
            yield reading


def fill_timestamps(stamps: Sequence[int], now: int, step_ms: int = FILL_STEP_MS) -> list[int]:
    """Missing (0) timestamps filled at step_ms spacing from their neighbours, else ending now."""
    out = list(stamps)
    known = [i for i, t in enumerate(out) if t]
    if not known:
        return [now - (len(out) - 1 - i) * step_ms for i in range(len(out))]
    for i in range(known[0] - 1, -1, -1):
        out[i] = out[i + 1] - step_ms
    for i in range(known[0] + 1, len(out)):
        out[i] = out[i] or out[i - 1] + step_ms
    return out


def open_input(path: str) -> TextIO:
    """The input file, or stdin for '-'; undecodable bytes become malformed lines, not crashes."""
    try:
        if path == "-":
            return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        return open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
