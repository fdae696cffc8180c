"""How fast one helper opens its upload batch: reports per second, with and without match-key reuse.

    python bench/reports.py [--reports N] [--reuse R ...] [--workers W ...] [--suite x25519|mlkem768-x25519]

For each reuse factor R (reports per distinct encrypted match key: 1 is no
reuse, every report has its own ciphertext; a user agent that reuses its
answer for a (collector, site, epoch) gives R > 1) and each worker count W,
H1 decodes a batch of N reports (:func:`ipa.reports.decode.decode_batch`: header,
chunk AEADs, every check, the HPKE opens, the share columns). Only H1's part
of each match key is sealed (the other helpers' parts are not needed to time
H1), so building the inputs costs one HPKE seal per distinct key.

Each row: seconds, reports decoded per second, distinct match keys opened,
and HPKE opens per second. ``W = 1`` opens in the calling process; larger W
uses a process pool (``cryptography``'s HPKE holds the GIL), whose start-up
(a few hundred ms) is included in the time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence

import numpy as np

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding, Purpose, info
from ipa.crypto.hpke import Suite, seal
from ipa.crypto.keys import KeyRegistry
from ipa.reports.batch import encode_batch
from ipa.reports.decode import decode_batch
from ipa.reports.layout import FIELD_RECORD, FORMAT_VERSION
from ipa.reports.match_key import EncryptedMatchKey, MatchKeyPart

__all__ = ["main", "make_batch"]

_SUITES = {"x25519": Suite.X25519, "mlkem768-x25519": Suite.MLKEM768_X25519}


def make_batch(
    reports: int, reuse: int, registry: KeyRegistry, binding: Binding
) -> tuple[bytes, QueryConfig]:
    """H1's batch of ``reports`` reports, each distinct match key used by ``reuse`` of them."""
    public = registry.public_key()
    bound = info(Purpose.MATCH_KEY, FORMAT_VERSION, public.suite, public.key_id, 0, binding)
    distinct = max(reports // reuse, 1)
    filler = b"\0" * public.suite.sealed_length(16)
    keys = []
    for _ in range(distinct):
        part = MatchKeyPart(0, public.key_id, seal(public.public_key, os.urandom(16), bound))
        others = (MatchKeyPart(1, 1, filler), MatchKeyPart(2, 1, filler))
        keys.append(EncryptedMatchKey(binding, public.suite, (part, *others)))
    match_keys = [keys[r % distinct] for r in range(reports)]
    fields = np.zeros(reports, dtype=FIELD_RECORD)
    fields["timestamp"] = np.arange(reports, dtype=np.uint64)[:, None]  # distinct rows: no duplicates
    config = QueryConfig(num_breakdowns=8, cap=100)
    return encode_batch(public, binding, match_keys, fields), config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=50_000)
    parser.add_argument("--reuse", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--suite", choices=sorted(_SUITES), default="x25519")
    args = parser.parse_args(argv)
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    registry = KeyRegistry.generate(0, _SUITES[args.suite])
    binding = Binding("shop.example", "collector.example", 1, "provider.example")
    columns = ("reuse", 5), ("workers", 7), ("reports", 8), ("distinct", 8), ("seconds", 7), ("reports/s", 10)
    print("  ".join(f"{name:>{width}}" for name, width in columns) + f"  {'opens/s':>8}")
    for reuse in args.reuse:
        batch, config = make_batch(args.reports, reuse, registry, binding)
        for workers in dict.fromkeys(args.workers):
            start = time.perf_counter()
            decoded = decode_batch(batch, registry, binding, config, workers=workers)
            seconds = time.perf_counter() - start
            opens = decoded.distinct_match_keys
            print(
                f"{reuse:>5}  {workers:>7}  {args.reports:>8,}  {opens:>8,}  {seconds:>7.2f}  "
                f"{args.reports / seconds:>10,.0f}  {opens / seconds:>8,.0f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
