"""``ipa demo``: a whole IPA run on this machine, from keys to the released result.

1. ``ipa keygen`` into a temporary directory (HPKE keys, TLS certificates,
   helper configs; a test network that allows unnoised release);
2. three ``ipa-helper`` processes on free loopback ports, TLS on;
3. synthetic multi-site events (``ipa.synthetic``: three publishers, two
   advertisers, people on several devices); the report collector of the
   publisher news.example takes its impressions and the conversions made on
   the advertiser sites, each encrypted by the user agent on its own site in
   the epoch of its own clock (two weekly epochs);
4. one source-fanout query for news.example over both epochs, with DP
   noise (``--epsilon``, default 1; each helper adds its own discrete
   Gaussian noise in shares); the released sums beside the true
   answer (``ipa.reference``): a table on a terminal, else (or with
   ``--json``) JSON in the schema of :mod:`ipa_client.output`; ``--chart``
   draws them. ``--no-noise`` runs a test network that releases exact sums,
   which must then equal the true answer.

Progress of every phase goes to stderr on a terminal. Every helper process
is stopped at the end, also on an error or Ctrl-C, which first cancels the
query at the helpers (the helpers run in their own process group, so a
terminal's Ctrl-C reaches only this process, which cancels the query and then
kills them: their network is thrown away with its temporary directory).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

from ipa.attribution.config import QueryConfig
from ipa.crypto.binding import Binding
from ipa.events import Events
from ipa.network import Network
from ipa.reference import attribute_query
from ipa.synthetic import ADVERTISERS, PUBLISHERS, generate
from ipa_client import output
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.commands._types import non_negative_int, positive_float, positive_int
from ipa_client.interrupt import cancel_on_interrupt
from ipa_client.local_network import LocalNetwork
from ipa_client.progress import QueryProgress, follow
from ipa_client.query_client import QueryClient, Release, endpoints

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "demo"
HELP = "run three local helpers and one query over synthetic events; print it beside the true answer"

DELTA = 1e-9
CONFIG = QueryConfig(num_breakdowns=8, cap=200, window=7 * 86_400, max_events_per_user=64, timestamp_bits=20)
PUBLISHER, PROVIDER = PUBLISHERS[0], "idp.example"
FIRST_EPOCH, LAST_EPOCH = 0, 1  # synthetic timestamps span [0, 2**20) seconds: weeks 0 and 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--events", type=positive_int, default=20_000, help="synthetic events (default 20000)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=1, help="seed of the synthetic events")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("--epsilon", type=positive_float, default=1.0, help="the query's ε (default 1)")
    noise.add_argument("--no-noise", action="store_true", help="a test network: release exact sums")
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="W",
        help="Ray worker actors per helper (default: 1, no Ray): each helper starts a local Ray cluster",
    )
    output.add_output_arguments(parser)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    # SIGTERM unwinds like Ctrl-C, so the helper processes are stopped either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        with tempfile.TemporaryDirectory(prefix="ipa-demo-") as directory, QueryProgress() as progress:
            progress.start("generate")
            everything = generate(
                args.events,
                seed=args.seed,
                num_breakdowns=CONFIG.num_breakdowns,
                publishers=PUBLISHERS,
                advertisers=ADVERTISERS,
                max_devices=3,
            )
            # What news.example's report collector holds: its impressions, and the conversions
            # made on the advertisers' sites.
            events = everything.take((everything.site == PUBLISHER) | everything.is_trigger)
            released = _run_query(args, events, Path(directory), progress)
    except KeyboardInterrupt:  # while the helpers started or stopped: nothing to cancel
        return cancel_on_interrupt(None, None)
    if isinstance(released, int):
        return released
    sums = released.sums
    exact = attribute_query(events, CONFIG, PUBLISHER)
    result = {
        "command": NAME,
        "query_id": released.query_id,
        "rows": len(events),
        "sums": sums.tolist(),
        "true_sums": exact.tolist(),
        "noise": released.noise.to_json(),  # the table shows each sum's 95% interval
        "epsilon": None if args.no_noise else args.epsilon,
        "delta": released.delta,
        "cap": CONFIG.cap,
    }
    output.emit(result, args)
    if args.no_noise:
        if not (sums == exact.astype(sums.dtype)).all():
            _say("ipa: error: the released result differs from the true answer")
            return 1
        if not output.wants_json(args):
            print("The released result equals the true answer (no noise: a test network).")
        return 0
    return 0


def _run_query(
    args: argparse.Namespace, events: Events, directory: Path, progress: QueryProgress
) -> Release | int:
    """Start the helpers, run the query, stop them: the release, or 130 on Ctrl-C."""
    created: list[str] = []
    progress.start("start helpers")
    with LocalNetwork(directory, allow_unnoised=args.no_noise, workers=args.workers) as local:
        workers = f", {args.workers} Ray workers each" if args.workers > 1 else ""
        _say(f"three helpers running (TLS on{workers}), files in {directory}")
        network = Network.load(local.network_file)
        identity = local.identity
        binding = Binding(
            site=PUBLISHER, report_collector=identity.name, epoch=FIRST_EPOCH, match_key_provider=PROVIDER
        )
        sites = ", ".join(f"{n:,} on {site}" for site, n in _per_site(events).items())
        _say(
            f"source-fanout query for {PUBLISHER}, epochs {FIRST_EPOCH}-{LAST_EPOCH}: "
            f"{len(events):,} reports ({sites})"
        )
        with QueryClient(endpoints(local.network_file), identity) as client:
            try:
                progress.start("encrypt", total=len(np.unique(events.match_key)), unit="users")
                epochs = network.epochs.epochs_of(events.timestamp)
                match_keys = simulate_user_agents(
                    events, network, binding, epochs, on_progress=progress.advance
                )
                collector = ReportCollector(network, binding, CONFIG, last_epoch=LAST_EPOCH)
                collector.add_events(events, match_keys)
                released = collector.submit(
                    client,
                    epsilon=args.epsilon,
                    no_noise=args.no_noise,
                    on_progress=follow(progress),
                    on_created=created.append,
                    on_upload=progress.advance,
                )
                progress.finish()
            except KeyboardInterrupt:
                progress.stop()
                status = cancel_on_interrupt(client, created[0] if created else None)
                # The network and its ledgers are thrown away with the directory: no need to
                # wait for a helper busy in a phase (decrypting, say) to notice the cancel.
                local.kill()
                return status
    return released


def _per_site(events: Events) -> dict[str, int]:
    names, counts = np.unique(events.site, return_counts=True)
    return {str(k): int(v) for k, v in zip(names, counts, strict=True)}
