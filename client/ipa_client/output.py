"""Results on the command line: one JSON schema for every command, a table on a terminal, a chart.

Every command that computes sums prints one result object. On a terminal it
is a table (breakdown key, released sum, its 95% interval when the result
states its noise, the true answer when the command knows it); with
``--json``, or when stdout is not a terminal (a pipe, a file), it is one line
of JSON with these keys (all but ``sums`` optional)::

    command    "reference" | "simulate" | "query" | "demo" | "fetch"
    query_id   the helpers' id of the query (query, demo, fetch)
    rows       events read
    sums       the released sum per breakdown key [0, B), in trigger-value units
    noise      {"mechanism": str, "std": x | [x, ...], "ci95": h | [h, ...]}: the noise
               of each released sum and the half-width of its 95% interval (a
               scalar applies to every sum); absent when the sums are exact
    true_sums  the in-the-clear answer (demo, simulate: commands that hold the events)
    epsilon, delta, cap   the query's DP parameters and per-user cap (null ε: no noise)

and command-specific figures beside them (``bytes_sent``, ``rounds``,
``seconds`` for simulate). ``--chart FILE`` also draws the sums (with their
intervals and the true answer where known) to FILE.png or FILE.svg.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["add_output_arguments", "chart_path", "emit", "intervals", "notes", "render_table", "wants_json"]

CHART_SUFFIXES = (".png", ".svg")


def chart_path(text: str) -> Path:
    """An argparse type: a .png or .svg path in a directory that exists."""
    path = Path(text)
    if path.suffix.lower() not in CHART_SUFFIXES:
        raise argparse.ArgumentTypeError(f"must end in .png or .svg, got {text!r}")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"directory {str(path.parent)!r} does not exist")
    return path


def add_output_arguments(parser: argparse.ArgumentParser, *, chart: bool = True) -> None:
    """Register ``--json`` and (unless ``chart=False``) ``--chart FILE``."""
    parser.add_argument(
        "--json", action="store_true", help="print JSON even on a terminal (the default when piped)"
    )
    if chart:
        parser.add_argument(
            "--chart",
            type=chart_path,
            metavar="FILE",
            help="also draw the sums with their 95%% intervals to FILE (.png or .svg)",
        )


def wants_json(args: argparse.Namespace) -> bool:
    """JSON with ``--json`` or when stdout is not a terminal."""
    return bool(getattr(args, "json", False)) or not sys.stdout.isatty()


def _per_sum(value: float | Sequence[float], count: int) -> list[float]:
    if isinstance(value, int | float):
        return [float(value)] * count
    values = [float(v) for v in value]
    if len(values) != count:
        raise ValueError(f"noise has {len(values)} values for {count} sums")
    return values


def intervals(result: dict[str, Any]) -> list[float] | None:
    """The half-width of each sum's 95% interval, or None when the result states no noise."""
    noise = result.get("noise")
    if not noise or noise.get("ci95") is None:
        return None
    return _per_sum(noise["ci95"], len(result["sums"]))


def notes(result: dict[str, Any]) -> list[str]:
    """The lines printed under a table: units, the noise and how to read it, negative sums."""
    half_widths = intervals(result)
    notes = []
    cap = result.get("cap")
    per_user = f", at most {cap:,} per user" if cap is not None else ""
    notes.append(f"Sums are in the events' trigger-value units{per_user}.")
    noise = result.get("noise")
    if noise and half_widths is not None:
        std = _per_sum(noise["std"], len(result["sums"])) if noise.get("std") is not None else None
        spread = f" (std {max(std):,.0f})" if std else ""
        notes.append(
            f"Each released sum carries {noise.get('mechanism', 'DP')} noise{spread}: "
            "the true sum lies in its 95% interval 19 times in 20."
        )
    if any(s < 0 for s in result["sums"]):
        notes.append("A negative sum is noise around a small true sum: read it as about 0.")
    if "epsilon" in result and result["epsilon"] is None:
        notes.append("No noise (a test network): the sums are exact.")
    return notes


def render_table(result: dict[str, Any]) -> Table:
    """The result as a rich Table (columns for interval and true answer only when known)."""
    sums = result["sums"]
    half_widths = intervals(result)
    truth = result.get("true_sums")
    table = Table()
    table.add_column("breakdown key", justify="right")
    exact = result.get("command") == "reference"
    table.add_column("sum (exact)" if exact else "released sum", justify="right")
    if half_widths is not None:
        table.add_column("95% interval", justify="right")
    if truth is not None:
        table.add_column("true answer", justify="right")
    for key, value in enumerate(sums):
        row = [str(key), f"{value:,}"]
        if half_widths is not None:
            h = half_widths[key]
            row.append(f"{value - h:,.0f} … {value + h:,.0f}")
        if truth is not None:
            row.append(f"{truth[key]:,}")
        table.add_row(*row, style="red" if value < 0 else None)
    return table


def _title(result: dict[str, Any]) -> str:
    parts = [result.get("command", "result")]
    if result.get("query_id"):
        parts.append(result["query_id"])
    if result.get("epsilon") is not None:
        parts.append(f"ε = {result['epsilon']:g}")
    if result.get("rows") is not None:
        parts.append(f"{result['rows']:,} events")
    return " · ".join(parts)


def emit(result: dict[str, Any], args: argparse.Namespace, *, title: str | None = None) -> None:
    """Print ``result`` as a table or JSON (see the module docstring), then draw ``--chart``."""
    if wants_json(args):
        print(json.dumps(result), flush=True)
    else:
        console = Console()
        console.print(title or _title(result), style="bold", highlight=False)
        console.print(render_table(result))
        for note in notes(result):
            console.print(note, highlight=False)
    path = getattr(args, "chart", None)
    if path is not None:
        from ipa_client.chart import write_chart  # matplotlib is slow to import: only when asked

        write_chart(path, result, title or _title(result))
        if sys.stderr.isatty():
            print(f"ipa: chart written to {path}", file=sys.stderr)
