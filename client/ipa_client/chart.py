"""``--chart FILE``: the released sums per breakdown key as a bar chart, PNG or SVG by extension.

Drawn with matplotlib's Agg backend (no display needed): one bar per
breakdown key with its 95% interval as an error bar when the result states
its noise, and the true answer beside it when the command knows it (demo,
simulate). Negative released sums (noise around a small true sum) go below
the zero line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything draws: files only, never a window

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

from ipa_client.output import intervals

__all__ = ["write_chart"]

_RELEASED = "#1f77b4"
_TRUE = "#9e9e9e"


def write_chart(path: str | Path, result: dict[str, Any], title: str = "") -> None:
    """Draw ``result`` (the schema of :mod:`ipa_client.output`) to ``path`` (.png or .svg)."""
    sums = np.asarray(result["sums"], dtype=float)
    keys = np.arange(len(sums))
    half_widths = intervals(result)
    truth = result.get("true_sums")
    width = 0.4 if truth is not None else 0.7
    offset = width / 2 if truth is not None else 0.0
    figure = Figure(figsize=(min(16.0, max(6.0, 0.45 * len(sums) + 2.5)), 4.5), layout="constrained")
    axes = figure.add_subplot()
    label = "released sum" + (" with 95% interval" if half_widths is not None else "")
    axes.bar(keys - offset, sums, width, color=_RELEASED, label=label)
    if half_widths is not None:
        axes.errorbar(keys - offset, sums, yerr=half_widths, fmt="none", ecolor="black", capsize=3, lw=1)
    if truth is not None:
        axes.bar(keys + offset, np.asarray(truth, dtype=float), width, color=_TRUE, label="true answer")
    axes.axhline(0, color="black", lw=0.8)
    axes.set_xlabel("breakdown key")
    axes.set_ylabel("sum of capped trigger values")
    axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    if len(sums) <= 40:
        axes.set_xticks(keys)
    axes.set_xlim(-0.6, len(sums) - 0.4)
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    axes.legend(loc="best", frameon=False)
    axes.set_title(title, loc="left", fontsize=10)
    figure.savefig(path, dpi=120, format=Path(path).suffix.lstrip(".").lower())
