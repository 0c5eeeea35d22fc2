"""The `heartrate` client's input: timestamps and reading lines."""

from __future__ import annotations

import pytest

from heartrate_serve.cli import inputs as cli_input
from heartrate_serve.cli.inputs import BadLine, Reading

T0_S = 1_700_000_000
T0_MS = T0_S * 1000


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1700000000", T0_MS),
        ("1700000000.25", T0_MS + 250),
        ("1700000000123", T0_MS + 123),
        ("2023-11-14T22:13:20Z", T0_MS),
        ("2023-11-14T22:13:20", T0_MS),
        ("2023-11-14T23:13:20.500+01:00", T0_MS + 500),
        ("0", 0),
    ],
)
def test_parse_time_ms_seconds_millis_and_iso(text: str, ms: int) -> None:
    """Seconds, milliseconds (>= 1e11) and ISO 8601 (naive = UTC) all become Unix ms."""
    assert cli_input.parse_time_ms(text) == ms


@pytest.mark.parametrize("text", ["yesterday", "-5", "nan", "inf", "1e400", "2023-13-01"])
def test_parse_time_ms_rejects_nonsense(text: str) -> None:
    """Words, negative, non-finite and impossible dates raise ValueError."""
    with pytest.raises(ValueError):
        cli_input.parse_time_ms(text)


@pytest.mark.parametrize(
    ("line", "reading"),
    [
        ("72", Reading(72)),
        ("  72 \n", Reading(72)),
        ("72.0", Reading(72)),
        ("1700000000,72", Reading(72, T0_MS)),
        ("1700000000 , 72", Reading(72, T0_MS)),
        ("1700000000\t72", Reading(72, T0_MS)),
        ("1700000000123,72", Reading(72, T0_MS + 123)),
        ("2023-11-14T22:13:20Z,72", Reading(72, T0_MS)),
        ("200", Reading(200)),
        ('{"bpm": 72}', Reading(72)),
        ('{"bpm": 72, "timestamp": 1700000000}', Reading(72, T0_MS)),
        ('{"bpm": 72, "timestamp": 1700000000.5}', Reading(72, T0_MS + 500)),
        ('{"bpm": 72, "timestamp": "2023-11-14T22:13:20Z"}', Reading(72, T0_MS)),
        ('{"bpm": 72, "timestamp": 1, "timestamp_ms": 1700000000007}', Reading(72, T0_MS + 7)),
        ('{"bpm": "72", "device": "strap"}', Reading(72)),
    ],
)
def test_parse_line_accepts_every_format(line: str, reading: Reading) -> None:
    """'bpm', 'timestamp,bpm' (s, ms or ISO) and JSON objects parse to the same Reading."""
    assert cli_input.parse_line(line) == reading


@pytest.mark.parametrize("line", ["", "   \n", "# comment", "  # 1700000000,72"])
def test_blank_and_comment_lines_are_skipped(line: str) -> None:
    """Blank and # lines are no reading and no error."""
    assert cli_input.parse_line(line) is None


@pytest.mark.parametrize(
    "line",
    [
        "abc",
        "72.5",
        "1,2,3",
        "x,72",
        "-5,72",
        "1700000000,",
        "nan",
        "1e400,72",
        "99999999999999",
        "{not json",
        '{"timestamp": 1700000000}',
        '{"bpm": true}',
        '{"bpm": null}',
        '{"bpm": 72, "timestamp": [1]}',
        '{"bpm": 72, "timestamp_ms": -1}',
        '{"bpm": 72, "timestamp": "soon"}',
        "[72]",
    ],
)
def test_malformed_lines_raise_value_error(line: str) -> None:
    """Every malformed line raises ValueError with a reason, never anything else."""
    with pytest.raises(ValueError, match=r"\S"):
        cli_input.parse_line(line)


def test_parse_lines_reports_and_skips_bad_lines() -> None:
    """Bad lines come out as BadLine with their line number; parsing carries on after them."""
    lines = ["timestamp,bpm\n", "72\n", "\n", "oops\n", "# note\n", "1700000000,80\n", "7,8,9"]
    items = list(cli_input.parse_lines(lines))
    assert items[0] == Reading(72)
    assert isinstance(items[1], BadLine) and items[1].lineno == 4 and items[1].text == "oops"
    assert items[2] == Reading(80, T0_MS)
    assert isinstance(items[3], BadLine) and items[3].lineno == 7
    assert len(items) == 4
    assert "line 4" in items[1].message() and "'oops'" in items[1].message()


def test_parse_lines_survives_pathological_json() -> None:
    """Deeply nested JSON and replacement characters are bad lines, not crashes."""
    items = list(
        cli_input.parse_lines(["[" * 100_000, "{" + '"a":' * 50_000, "\ufffd\ufffd", "60"])
    )
    assert [type(i) for i in items] == [BadLine, BadLine, BadLine, Reading]


def test_header_lines_are_skipped_silently() -> None:
    """A CSV header such as 'timestamp,bpm' or 'BPM' is neither a reading nor an error."""
    assert cli_input.is_header("timestamp,bpm") and cli_input.is_header('"Time"; "BPM"')
    assert not cli_input.is_header("72") and not cli_input.is_header("oops")
    assert list(cli_input.parse_lines(["BPM\n", "60\n"])) == [Reading(60)]


@pytest.mark.parametrize(
    ("stamps", "filled"),
    [
        ([0, 0, 0], [T0_MS - 2000, T0_MS - 1000, T0_MS]),
        ([0, 0, 5000, 0, 9000, 0], [3000, 4000, 5000, 6000, 9000, 10000]),
        ([1, 2, 3], [1, 2, 3]),
        ([], []),
    ],
)
def test_fill_timestamps(stamps: list[int], filled: list[int]) -> None:
    """Missing times are 1 s after the previous (before the first known; else ending now)."""
    assert cli_input.fill_timestamps(stamps, T0_MS) == filled
