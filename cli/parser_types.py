"""Argument types of the `heartrate` parser: checked numbers, times and zone bounds."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from heartrate_serve.cli.inputs import parse_time_ms


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= low."""

    def convert(text: str) -> int:
        """The integer, or an argparse error."""
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    convert.__name__ = f"integer >= {low}"
    return convert


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def time_arg(text: str) -> int:
    """An argparse type: a time (Unix s, Unix ms or ISO 8601) as Unix ms."""
    try:
        return parse_time_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def lows_arg(text: str) -> list[int]:
    """An argparse type: comma-separated, strictly ascending, positive zone lower bounds."""
    try:
        lows = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not lows or lows[0] <= 0 or any(b <= a for a, b in zip(lows, lows[1:], strict=False)):
        raise argparse.ArgumentTypeError(f"must be positive and strictly ascending: {text!r}")
    return lows
