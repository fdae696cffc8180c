"""``ipa demo``: a whole IPA run on this machine, from keys to the released result.

1. ``ipa keygen`` into a temporary directory (HPKE keys, TLS certificates,
   helper configs; a test network that allows unnoised release);
2. three ``ipa-helper`` processes on free loopback ports, TLS on;
3. synthetic events; one user agent per user encrypts its match key to the
   three helpers; the report collector builds and uploads the reports;
4. one query with DP noise (``--epsilon``, default 1; each helper adds its
   own discrete Gaussian noise in shares); the released sums beside the true
   answer (``ipa.reference``). ``--no-noise`` runs a test network that
   releases exact sums, which must then equal the true answer.

Every helper process is stopped at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.dp import calibrate
from ipa.network import Network
from ipa.reference import attribute_query
from ipa.synthetic import generate
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.commands._types import non_negative_int, positive_float, positive_int
from ipa_client.local_network import LocalNetwork
from ipa_client.progress import ProgressBar
from ipa_client.query_client import QueryClient, endpoints

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "demo"
HELP = "run three local helpers and one query over synthetic events; print it beside the true answer"

DELTA = 1e-9
CONFIG = QueryConfig(num_breakdowns=8, cap=200, window=7 * 86_400, max_events_per_user=64, timestamp_bits=20)
BINDING = Binding(
    site="shop.example", report_collector="ads.example", epoch=1, match_key_provider="idp.example"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--events", type=positive_int, default=20_000, help="synthetic events (default 20000)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=1, help="seed of the synthetic events")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("--epsilon", type=positive_float, default=1.0, help="the query's ε (default 1)")
    noise.add_argument("--no-noise", action="store_true", help="a test network: release exact sums")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    # SIGTERM unwinds like Ctrl-C, so the helper processes are stopped either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    events = generate(args.events, seed=args.seed, num_breakdowns=CONFIG.num_breakdowns)
    unnoised = args.no_noise
    with (
        tempfile.TemporaryDirectory(prefix="ipa-demo-") as directory,
        LocalNetwork(Path(directory), allow_unnoised=unnoised) as local,
    ):
        _say(f"three helpers running (TLS on), files in {directory}")
        network = Network.load(local.network_file)
        start = time.perf_counter()
        match_keys = simulate_user_agents(events, network, BINDING)
        took = time.perf_counter() - start
        _say(f"{len(events):,} events; user agents encrypted their match keys in {took:.1f} s")
        collector = ReportCollector(network, BINDING, CONFIG)
        collector.add_events(events, match_keys)
        start = time.perf_counter()
        with QueryClient(endpoints(local.network_file)) as client, ProgressBar(sys.stderr) as bar:
            query_id, released = collector.submit(
                client, epsilon=args.epsilon, delta=DELTA, no_noise=unnoised, on_progress=bar.update
            )
        seconds = time.perf_counter() - start
    exact = attribute_query(events, CONFIG)
    print(f"query {query_id}: {seconds:.1f} s from upload to result (cap {CONFIG.cap}, 7-day window)")
    print(f"{'breakdown':>9}  {'released':>10}  {'true answer':>11}")
    for key, (got, want) in enumerate(zip(released.tolist(), exact.tolist(), strict=True)):
        print(f"{key:>9}  {got:>10,}  {want:>11,}")
    if unnoised:
        same = (released == exact.astype(released.dtype)).all()
        print("released result equals the true answer (no noise: a test network)" if same else "MISMATCH")
        return 0 if same else 1
    std = np.sqrt(3) * calibrate(args.epsilon, DELTA, CONFIG.cap).scale
    print(f"DP noise: ε = {args.epsilon:g}, δ = {DELTA:g}; each sum's noise has std ≈ {std:,.0f}")
    return 0
