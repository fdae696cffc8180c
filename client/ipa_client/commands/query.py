"""``ipa query``: run one query on a helper network and print its result.

Plays the user agents of the events' match keys (their encrypted match
keys, bound to ``--site``, the report collector of ``--identity``, the
provider and ``--epoch``), builds the report collector's three uploads,
submits them to the network in ``--network`` as that collector (mutual TLS
with its certificate) and prints the released sums: a table on a
terminal, else (or with ``--json``) one JSON object in the schema of
:mod:`ipa_client.output` (``{"command": "query", "query_id": ..., "rows": n,
"sums": [...], "epsilon", "delta", "cap"}``). Progress of every phase goes
to stderr when it is a terminal. A refused or failed query exits with status
2 and the reason on stderr; so does a helper that cannot be reached, named
with the reason (connection refused, TLS handshake failed, no answer) before
any query is created. Ctrl-C cancels the query at the helpers (ε refunded if
nothing was released), says so with the query id, and exits with status 130.
A file with no events is a query like any other: charged, and answered with
zero sums (plus noise unless ``--no-noise``).
"""

from __future__ import annotations

import argparse

import numpy as np

from ipa.crypto.binding import Binding
from ipa.errors import InputError
from ipa.network import Network
from ipa_client import output
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.commands._input import read_query_events
from ipa_client.commands._query_args import add_query_arguments, add_width_arguments, config_from_args
from ipa_client.commands._types import non_negative_int, positive_float
from ipa_client.identity import load_identity
from ipa_client.interrupt import cancel_on_interrupt
from ipa_client.progress import QueryProgress, follow
from ipa_client.query_client import QueryClient, endpoints

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "query"
HELP = "run a query over an event CSV file on a helper network"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", required=True, metavar="FILE", help="the network.toml of the helpers")
    add_query_arguments(parser)
    parser.add_argument("--site", required=True, help="the site whose events these are")
    parser.add_argument("--epoch", type=non_negative_int, required=True, help="the epoch they belong to")
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
    parser.add_argument("--insecure", action="store_true", help="no TLS: development helpers only")
    add_width_arguments(parser)
    output.add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    identity = load_identity(args.identity)
    binding = Binding(
        site=args.site,
        report_collector=identity.name,
        epoch=args.epoch,
        match_key_provider=args.match_key_provider,
    )
    network = Network.load(args.network)
    events = read_query_events(args.input, config)  # no events is a query too: zero sums (+ noise)
    if set(events.sites()) - {args.site}:
        raise InputError(f"{args.input} names sites other than {args.site}: not supported yet")
    created: list[str] = []
    client = QueryClient(endpoints(args.network), identity, insecure=args.insecure)
    try:
        with QueryProgress() as progress:
            progress.start("encrypt", total=len(np.unique(events.match_key)), unit="users")
            match_keys = simulate_user_agents(events, network, binding, on_progress=progress.advance)
            collector = ReportCollector(network, binding, config)
            collector.add_events(events, match_keys)
            release = collector.submit(
                client,
                epsilon=args.epsilon or 0.0,
                delta=args.delta,
                no_noise=args.no_noise,
                drop_invalid=args.drop_invalid,
                on_progress=follow(progress),
                on_created=created.append,
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

