"""Argument checks shared by the core modules, raising InputError that name the argument."""

from __future__ import annotations

import operator

import numpy as np

from ipa.errors import InputError

__all__ = ["integer"]


def integer(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python int in ``[low, high]`` (either bound optional), or InputError.

    Accepts ints and numpy integers; refuses bools, floats and everything else.
    """
    if isinstance(value, bool | np.bool_):
        raise InputError(f"{name} must be an integer, got {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InputError(f"{name} must be an integer, got {value!r}") from None
    if (low is not None and number < low) or (high is not None and number > high):
        if high is None:
            bound = f"at least {low}"
        elif low is None:
            bound = f"at most {high}"
        else:
            bound = f"in [{low}, {high}]"
        raise InputError(f"{name} must be {bound}, got {number}")
    return number
