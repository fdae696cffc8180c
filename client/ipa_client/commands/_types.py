"""Argument types shared by subcommands: argparse reports their errors with the flag name."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["int_in", "non_negative_int", "positive_float", "positive_int", "power_of_two"]


def non_negative_int(text: str) -> int:
    """``text`` as an int >= 0, or ArgumentTypeError."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """``text`` as an int >= 1, or ArgumentTypeError."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """``text`` as a finite float > 0, or ArgumentTypeError."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def power_of_two(text: str) -> int:
    """``text`` as a power of two ≥ 1, or ArgumentTypeError."""
    value = positive_int(text)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two (1, 2, 4, …), got {text!r}")
    return value


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: ``text`` as an int in ``[low, high]``, or ArgumentTypeError."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}], got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}], got {text!r}")
        return value

    parse.__name__ = f"integer in [{low}, {high}]"
    return parse
