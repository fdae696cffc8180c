"""Time and communication of the whole attribution query, per phase, in memory.

    python bench/pipeline.py --events N [--security MODE] [--json F] [--seed S] [--memory] [--workers W]

Synthetic events (``ipa.synthetic``) are shared as the report collector would
(not timed), then :func:`ipa.attribution.pipeline.run_query` runs in the
in-memory three-party runner with 16 breakdowns, cap 100, a one-day window
and K = 64, in ``--security`` mode (``semi-honest``, the default, or
``malicious``: products verified at the query's checkpoints, whose traffic
counts in the phase each closes, ``docs/malicious.md``). The released sums
are checked against ``ipa.reference`` (exit 1 on any difference). Printed
per phase: seconds (slowest helper) and bytes sent per row by each helper;
then the query's communication rounds (latency: the longest chain of
messages each sent after the previous one arrived) and the process's peak
RSS (all three helpers are threads of this process). The process's malloc is
set up as a helper's (``ipa_helper.allocator.tune_malloc``). ``--json F`` writes
``{"events": N, "security": MODE, "seconds": {phase: s, "total": s},
"bytes_per_row": {phase: [H1, H2, H3]}, "rounds": R, "peak_rss_mb": M,
"log2_soundness": S}`` (S: the malicious query's soundness bound, log2, ≤ −40; null in
semi-honest mode).

``--workers W`` (W > 1) runs the query distributed (``docs/scaling.md``):
each helper's rows are cut into W even blocks and :func:`run_query` runs as
3·W threads (:func:`ipa.mpc.memory.run_workers`), worker k of each helper in
triple k, the W results added; bytes per row are then summed over each
helper's triples, and the bytes each helper's workers sent each other are
printed per phase too (``"collective_bytes_per_row"`` in ``--json``).

``--memory`` also traces allocations (:mod:`memory`, tracemalloc) and prints,
for the bench's own stages (generating and sharing the events, the
reference) and each phase of the query, the peak and the held bytes per
event of all three helpers and the bench together; ``--json`` then has
``"memory": {stage: {"peak": B, "held": B}}``. Tracing slows the run: take
times from a run without it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

import numpy as np
from memory import PhaseMemory
from mpc import machine, peak_rss_mib

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import PHASES, run_query
from ipa.attribution.rows import SharedRows, share_events
from ipa.events import Events
from ipa.mpc.collective import slices
from ipa.mpc.memory import SECURITY_MODES, run_three, run_workers
from ipa.mpc.replicated import AShares
from ipa.mpc.sharing import reconstruct
from ipa.reference import attribute_query
from ipa.synthetic import generate
from ipa_helper.allocator import tune_malloc

CONFIG = QueryConfig(num_breakdowns=16, cap=100, window=86_400, max_events_per_user=64)
# Step prefixes of each phase's traffic (the "attribute" phase is boundaries + last touch).
# Malicious mode: each phase's checkpoints (verify_cap_0, ...) count in it (the aggregate's products are
# verified at release, after the noise).
TRAFFIC = {
    "sort": ["root/sort", "root/verify_sort"],
    "attribute": ["root/boundaries", "root/last_touch", "root/verify_attribute"],
    "cap": ["root/value_to_arith", "root/cap", "root/verify_cap"],
    "aggregate": ["root/aggregate"],
    "noise": ["root/noise", "root/verify_release"],
}


def _events(events: int, seed: int) -> Events:
    return generate(events, seed=seed, num_breakdowns=CONFIG.num_breakdowns)


def _bytes_under(bytes_sent: dict[str, int], prefixes: list[str], root: str = "root") -> int:
    """Bytes sent at or below any of ``prefixes`` (below ``root``), a checkpoint family's members included."""
    roots = [root + p.removeprefix("root") for p in prefixes]
    chunk = re.compile("|".join(re.escape(p) + r"(_\d+)?(/|$|:)" for p in roots))
    return sum(n for step, n in bytes_sent.items() if chunk.match(step))


def _blocks(rows: SharedRows, workers: int) -> list[SharedRows]:
    """One helper's rows cut into the W even blocks of :func:`ipa.mpc.collective.slices`."""
    return [
        SharedRows(*(c.map(lambda a, s=s: a[..., s]) for c in rows.columns()), off_site=rows.off_site[s])
        for s in slices(len(rows), workers)
    ]


def _run_distributed(shares: list[SharedRows], workers: int, hook, security: str) -> dict:
    """run_query on W workers per helper: the released shares, seconds, bytes per row, rounds."""
    result = run_workers(
        lambda ctx, rows: run_query(ctx, rows, CONFIG, on_phase=hook),
        [_blocks(rows, workers) for rows in shares],
        workers=workers,
        security=security,
    )
    outputs = [o for by_worker in result.outputs for o in by_worker]
    sums = [AShares(sum(o.sums.left for o in w), sum(o.sums.right for o in w)) for w in result.outputs]
    mpc = [[s.bytes_sent for s in by_worker] for by_worker in result.stats]
    group = [[s.bytes_sent for s in by_worker] for by_worker in result.collective]
    return {
        "sums": sums,
        "seconds": {p: max(o.seconds[p] for o in outputs) for p in PHASES},
        "traffic": [[(f"w{k}", sent) for k, sent in enumerate(by_worker)] for by_worker in mpc],
        "group": [[(k, sent) for k, sent in enumerate(by_worker)] for by_worker in group],
        "rounds": result.rounds,
        "soundness": outputs[0].log2_soundness,
    }


def _run_one_process(shares: list[SharedRows], hook, security: str) -> dict:
    result = run_three(
        lambda ctx, rows: run_query(ctx, rows, CONFIG, on_phase=hook), shares, security=security
    )
    return {
        "sums": [o.sums for o in result.outputs],
        "seconds": {p: max(o.seconds[p] for o in result.outputs) for p in PHASES},
        "traffic": [[("root", s.bytes_sent)] for s in result.stats],
        "group": [[] for _ in result.stats],
        "rounds": result.rounds,
        "soundness": result.outputs[0].log2_soundness,
    }


def measure(
    events: int, seed: int, memory: PhaseMemory | None = None, security: str = "semi-honest", workers: int = 1
) -> dict:
    """Run the query once on ``events`` synthetic events in ``security`` mode; return the figures.

    With ``memory``, allocations are traced and marked per stage and phase.
    """
    mark = memory.mark if memory else lambda label: None
    hook = memory.hook() if memory else None
    if memory:
        memory.parties = 3 * workers
        memory.start()
    # The events are made again for the reference (the same seed gives the same events)
    # rather than held through the query: the bench's own data counts toward the peak too.
    shares = share_events(_events(events, seed), CONFIG)
    mark("generate and share")
    start = time.perf_counter()
    if workers > 1:
        run = _run_distributed(shares, workers, hook, security)
    else:
        run = _run_one_process(shares, hook, security)
    del shares
    total = time.perf_counter() - start
    released = reconstruct(run["sums"])
    expected = attribute_query(_events(events, seed), CONFIG)
    mark("reference")
    if memory:
        memory.stop()
    if not np.array_equal(released, expected):
        raise SystemExit("bench/pipeline.py: MPC result differs from the reference")
    rows = max(events, 1)

    def per_phase(parts: list[list[tuple]]) -> dict[str, list[float]]:
        out = {
            phase: [sum(_bytes_under(sent, prefixes, root) for root, sent in by) / rows for by in parts]
            for phase, prefixes in TRAFFIC.items()
        }
        out["total"] = [sum(sum(sent.values()) for _, sent in by) / rows for by in parts]
        return out

    group = [[("", {"root/" + step: n for step, n in sent.items()}) for _, sent in by] for by in run["group"]]
    figures = {
        "events": events,
        "security": security,
        "workers": workers,
        "seconds": run["seconds"] | {"total": total},
        "bytes_per_row": per_phase(run["traffic"]),
        "rounds": run["rounds"],
        "peak_rss_mb": peak_rss_mib(),
        "log2_soundness": run["soundness"],
    }
    if workers > 1:
        figures["collective_bytes_per_row"] = per_phase([[("root", sent) for _, sent in by] for by in group])
    if memory:
        figures["memory"] = memory.per_row(events)
    return figures


def _print_memory(stages: dict[str, dict[str, float]]) -> None:
    print("traced memory per event (three helpers and the bench's own data), bytes:")
    print(f"{'stage':<10} {'peak':>8} {'held':>8}")
    for stage, row in stages.items():
        print(f"{stage:<10} {row['peak']:>8,.0f} {row['held']:>8,.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--security", choices=SECURITY_MODES, default="semi-honest")
    parser.add_argument("--json", metavar="F")
    parser.add_argument("--memory", action="store_true", help="trace memory per phase (slower)")
    parser.add_argument("--workers", type=int, default=1, help="workers per helper (default 1)")
    args = parser.parse_args(argv)
    tune_malloc()  # the helper process's malloc settings, before any thread (ipa_helper.allocator)
    memory = PhaseMemory() if args.memory else None
    figures = measure(args.events, args.seed, memory, args.security, args.workers)
    workers = f"; {args.workers} workers per helper" if args.workers > 1 else ""
    print(machine() + f"; {args.security}{workers}")
    group = figures.get("collective_bytes_per_row")
    print(f"{'phase':<10} {'seconds':>8}  bytes/row H1, H2, H3" + ("   inside each helper" if group else ""))
    for phase, seconds in figures["seconds"].items():
        traffic = ", ".join(f"{b:,.0f}" for b in figures["bytes_per_row"][phase])
        inside = "   " + ", ".join(f"{b:,.1f}" for b in group[phase]) if group else ""
        print(f"{phase:<10} {seconds:>8.2f}  {traffic}{inside}")
    rate = args.events / figures["seconds"]["total"]
    print(f"# {args.events:,} events, {rate:,.0f} events/s, {figures['rounds']} rounds,", end=" ")
    print(f"peak RSS {figures['peak_rss_mb']:,.0f} MiB (three helpers in one process)")
    if figures["log2_soundness"] is not None:
        print(f"# sound to 2^{figures['log2_soundness']:.2f} over the whole query (malicious mode)")
    if "memory" in figures:
        _print_memory(figures["memory"])
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
