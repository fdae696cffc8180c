"""Run one IPA query on synthetic events with three in-memory helpers.

    python examples/simulate_query.py [--events N] [--seed S]

The report collector's part (presort and secret-share the events), the three
helpers' part (the MPC pipeline, in three threads exchanging real messages),
and the result beside the exact in-the-clear answer. No noise, so the two
must be equal; ``ipa simulate --epsilon`` and ``ipa demo`` add DP noise.
"""

from __future__ import annotations

import argparse
import time

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import run_query
from ipa.attribution.rows import share_events
from ipa.mpc.memory import run_three
from ipa.mpc.sharing import reconstruct
from ipa.reference import attribute_query
from ipa.synthetic import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    config = QueryConfig(num_breakdowns=8, cap=200, window=7 * 86_400, max_events_per_user=64)
    events = generate(args.events, seed=args.seed, num_breakdowns=config.num_breakdowns)
    shares = share_events(events, config)  # the report collector's job

    start = time.perf_counter()
    run = run_three(lambda ctx, rows: run_query(ctx, rows, config), shares)
    seconds = time.perf_counter() - start
    released = reconstruct([out.sums for out in run.outputs])  # the collector rebuilds the result
    exact = attribute_query(events, config)

    print(f"{len(events):,} events, three in-memory helpers, {seconds:.1f} s, {run.rounds} rounds")
    print(f"bytes sent per row by H1, H2, H3: {[round(b / max(len(events), 1)) for b in run.bytes_sent()]}")
    print(f"{'breakdown':>9}  {'MPC result':>12}  {'true answer':>12}")
    for key, (got, want) in enumerate(zip(released.tolist(), exact.tolist(), strict=True)):
        print(f"{key:>9}  {got:>12,}  {want:>12,}")
    print("MPC result equals the true answer" if (released == exact).all() else "MISMATCH")


if __name__ == "__main__":
    main()
