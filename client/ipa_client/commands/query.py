"""``ipa query``: run one query on a helper network and print its result.

Plays the user agents of the events' match keys: each event's encrypted
match key is bound to the event's own site (``--site`` for events without
one), the report collector of ``--identity``, the provider and the epoch of
its user agent. With ``--epoch E`` every user agent is in epoch E; with
``--epoch E0-E1`` each event's user agent is in the epoch its timestamp
falls in (the network's epoch schedule; timestamps as Unix seconds), which
must be in the span. Builds the report collector's three uploads for a
``--query-type`` query of querying site ``--site``, submits them to the
network in ``--network`` as that collector (mutual TLS with its
certificate) and prints the released sums: a table on a
terminal, else (or with ``--json``) one JSON object in the schema of
:mod:`ipa_client.output` (``{"command": "query", "query_id": ..., "rows": n,
"sums": [...], "epsilon", "delta", "cap"}``). Progress of every phase goes
to stderr when it is a terminal. A refused or failed query exits with status
2 and the reason on stderr; so does a helper that cannot be reached, named
with the reason (connection refused, TLS handshake failed, no answer) before
any query is created. ``--security malicious|semi-honest`` is the query's
security mode, by default the network's (``security`` in ``network.toml``,
malicious unless ``ipa keygen --security semi-honest``); helpers refuse a
semi-honest query unless their configs allow it. A query that a helper
aborted because a check for a deviating helper failed exits with status 3
(``malicious behaviour detected`` in the reason). Ctrl-C cancels the query at the helpers (ε refunded if
nothing was released), says so with the query id, and exits with status 130.
A file with no events is a query like any other: charged, and answered with
zero sums (plus noise unless ``--no-noise``). Once the network has accepted
the query, its receipt (query id and this collector's tokens, 0600) is
written to ``--state-dir`` so ``ipa fetch`` can get the result later, even
if this client dies.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ipa.crypto.binding import Binding
from ipa.epochs import parse_epochs
from ipa.errors import InputError
from ipa.events import Events
from ipa.mpc.memory import SECURITY_MODES
from ipa.network import Network
from ipa_client import output
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.commands._input import read_query_events
from ipa_client.commands._query_args import (
    add_query_arguments,
    add_site_arguments,
    add_width_arguments,
    config_from_args,
)
from ipa_client.commands._types import positive_float
from ipa_client.identity import load_identity
from ipa_client.interrupt import cancel_on_interrupt
from ipa_client.progress import QueryProgress, follow
from ipa_client.query_client import QueryClient, endpoints
from ipa_client.receipts import default_state_dir, write_receipt

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "query"
HELP = "run a query over an event CSV file on a helper network"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", required=True, metavar="FILE", help="the network.toml of the helpers")
    add_query_arguments(parser)
    add_site_arguments(parser, required=True)
    parser.add_argument(
        "--epoch",
        required=True,
        metavar="E|E0-E1",
        help="the query's epoch, or consecutive epochs E0 to E1 (each charged to --site)",
    )
    parser.add_argument(
        "--identity",
        required=True,
        metavar="FILE",
        help="this report collector's identity, DIR/collectors/NAME.toml from ipa keygen",
    )
    parser.add_argument("--match-key-provider", default="ipa-cli", help="who set the events' match keys")
    noise = parser.add_mutually_exclusive_group(required=True)
    noise.add_argument("--epsilon", type=positive_float, help="the query's DP budget ε")
    noise.add_argument("--no-noise", action="store_true", help="exact sums: test networks only")
    parser.add_argument(
        "--delta",
        type=positive_float,
        default=0.0,
        help="DP δ: the network's (from its helper configs) unless given, and then it must equal it",
    )
    parser.add_argument("--drop-invalid", action="store_true", help="drop invalid reports instead of failing")
    parser.add_argument(
        "--security",
        choices=SECURITY_MODES,
        default=None,
        help="the query's security mode (default: the network's, from network.toml)",
    )
    parser.add_argument("--insecure", action="store_true", help="no TLS: development helpers only")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the query's receipt goes, for ipa fetch (default: $XDG_STATE_HOME/ipa)",
    )
    add_width_arguments(parser)
    output.add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    identity = load_identity(args.identity)
    first, last = parse_epochs(args.epoch)
    binding = Binding(
        site=args.site,
        report_collector=identity.name,
        epoch=first,
        match_key_provider=args.match_key_provider,
    )
    network = Network.load(args.network)
    events = read_query_events(args.input, config)  # no events is a query too: zero sums (+ noise)
    epochs = None if first == last or not len(events) else _event_epochs(events, network, first, last)
    created: list[str] = []
    client = QueryClient(endpoints(args.network), identity, insecure=args.insecure)
    state_dir = args.state_dir or default_state_dir()

    def on_created(query_id: str) -> None:
        created.append(query_id)
        write_receipt(state_dir, query_id, Path(args.network), client.tokens)

    try:
        with QueryProgress() as progress:
            progress.start("encrypt", total=len(np.unique(events.match_key)), unit="users")
            match_keys = simulate_user_agents(events, network, binding, epochs, on_progress=progress.advance)
            collector = ReportCollector(network, binding, config, last_epoch=last)
            collector.add_events(events, match_keys)
            release = collector.submit(
                client,
                epsilon=args.epsilon or 0.0,
                delta=args.delta,
                no_noise=args.no_noise,
                drop_invalid=args.drop_invalid,
                security=args.security or network.security,
                on_progress=follow(progress),
                on_created=on_created,
                on_upload=progress.advance,
            )
            progress.finish()
    except KeyboardInterrupt:
        return cancel_on_interrupt(client, created[0] if created else None)
    finally:
        client.close()
    result = {
        "command": NAME,
        "query_id": release.query_id,
        "rows": len(events),
        "sums": release.sums.tolist(),
        "noise": release.noise.to_json(),
        "epsilon": None if args.no_noise else args.epsilon,
        "delta": release.delta,
        "cap": config.cap,
    }
    output.emit(result, args)
    return 0


def _event_epochs(events: Events, network: Network, first: int, last: int) -> np.ndarray:
    """Each event's epoch by its timestamp; InputError naming an event outside ``first..last``."""
    epochs = network.epochs.epochs_of(events.timestamp)
    outside = np.flatnonzero((epochs < first) | (epochs > last))
    if len(outside):
        row = int(outside[0])
        raise InputError(f"event {row}: its timestamp is in epoch {epochs[row]}, not in {first}-{last}")
    return epochs
