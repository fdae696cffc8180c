"""``ipa budget``: a site's privacy budget in one epoch, as every helper's ledger has it.

Prints one JSON object::

    {"site", "epoch", "delta", "budget", "spent", "remaining",
     "spent_by_helper": [H1, H2, H3],
     "rho": {"unit", "budget", "spent", "spent_by_helper": [H1, H2, H3]},
     "queries": [{"query_id", "epsilon", "rho_units", "state"}, ...],
     "agree": true | false,
     "disagreements": [{"query_id", "states": [H1, H2, H3]}, ...]}   # only when they disagree

The ledgers account in zCDP ρ, in exact integer units (``rho``; ``unit``
is 1e-12): ``budget`` is the epoch's ε at the network's ``delta``,
``spent_by_helper`` the ε that each helper's spent ρ (reserved or committed)
is worth (queries compose in ρ, so it is less than the sum of their ε),
``spent`` the largest of them and ``remaining`` the largest ε one more query
may ask for. Each query's ``state`` is ``reserved`` (admitted, not
ended), ``committed`` (all three helpers stored their result shares and voted to
commit: spent for good, the result deliverable; docs/reliability.md) or
``refunded`` (it failed before any result share left a helper); ``queries``
lists each query once with the state that counts (committed over reserved
over refunded).

The three ledgers must agree on every query's state. A query ending moves
through them one helper at a time, so ``ipa budget`` reads them again for up
to ``--wait`` seconds (default 10) until they agree; if they still do not,
it prints the JSON with ``"agree": false`` and each query whose states
differ (``"absent"`` where a ledger does not know it, which agrees with
``refunded``: a helper that refused a query reserved nothing), says so on
stderr and exits with status 3.

Only a report collector the site authorised may look (``--identity``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import grpc

from ipa.dp.accounting import RHO_UNIT
from ipa.errors import IpaError
from ipa_client.commands._types import non_negative_int
from ipa_client.identity import load_identity
from ipa_client.query_client import QueryClient, endpoints
from ipa_rpc.reach import unreachable_reason
from ipa_rpc.v1 import budget_pb2, budget_pb2_grpc

__all__ = ["DISAGREE_STATUS", "HELP", "NAME", "add_arguments", "run"]

_WEIGHT = {"refunded": 0, "reserved": 1, "committed": 2}
_TIMEOUT = 30.0
DISAGREE_STATUS = 3
"""Exit status when the ledgers still disagree after ``--wait``."""

NAME = "budget"
HELP = "show a site's privacy budget spend in one epoch"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a non-negative number of seconds, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", required=True, metavar="FILE", help="the network.toml of the helpers")
    parser.add_argument("--site", required=True)
    parser.add_argument("--epoch", type=non_negative_int, required=True)
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="read the ledgers again for up to S seconds until they agree (default: 10; 0: read once)",
    )
    parser.add_argument(
        "--identity",
        required=True,
        metavar="FILE",
        help="a report collector the site authorised: DIR/collectors/NAME.toml from ipa keygen",
    )
    parser.add_argument("--insecure", action="store_true", help="no TLS: development helpers only")


def _inspect(client: QueryClient, request: budget_pb2.BudgetRequest) -> list[budget_pb2.BudgetStatus]:
    statuses = []
    for helper, channel in enumerate(client.channels):
        try:
            stub = budget_pb2_grpc.BudgetStub(channel)
            statuses.append(stub.Inspect(request, timeout=_TIMEOUT, metadata=client.metadata))
        except grpc.RpcError as exc:
            why = unreachable_reason(exc, _TIMEOUT) or exc.details() or exc.code().name
            raise IpaError(f"H{helper + 1} did not answer: {why}") from None
    return statuses


def _disagreements(statuses: list[budget_pb2.BudgetStatus]) -> list[dict]:
    """Each query whose spend differs between the ledgers, with the three states.

    ``absent`` (a helper refused the query before reserving anything) and
    ``refunded`` both mean nothing spent there, so they agree.
    """
    states: dict[str, list[str]] = {}
    for helper, status in enumerate(statuses):
        for q in status.queries:
            states.setdefault(q.query_id, ["absent"] * len(statuses))[helper] = q.state
    spends = {q: {s.replace("absent", "refunded") for s in states_} for q, states_ in states.items()}
    return [{"query_id": q, "states": s} for q, s in states.items() if len(spends[q]) > 1]


def _describe(disagreements: list[dict]) -> str:
    parts = []
    for d in disagreements:
        where = ", ".join(f"{state} at H{h + 1}" for h, state in enumerate(d["states"]))
        parts.append(f"query {d['query_id']} is {where}")
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    request = budget_pb2.BudgetRequest(site=args.site, epoch=args.epoch)
    identity = load_identity(args.identity)
    end = time.monotonic() + args.wait
    with QueryClient(endpoints(args.network), identity, insecure=args.insecure) as client:
        statuses = _inspect(client, request)
        while _disagreements(statuses) and time.monotonic() < end:
            time.sleep(min(0.5, max(end - time.monotonic(), 0.0)))
            statuses = _inspect(client, request)
    disagreements = _disagreements(statuses)
    worst = max(statuses, key=lambda s: s.spent_units)  # the ledger that counts most spent
    queries: dict[str, dict] = {}
    for status in statuses:
        for q in status.queries:
            known = queries.get(q.query_id)
            if known is None or _WEIGHT[q.state] > _WEIGHT[known["state"]]:
                queries[q.query_id] = {
                    "query_id": q.query_id,
                    "epsilon": q.epsilon,
                    "rho_units": q.rho_units,
                    "state": q.state,
                }
    output = {
        "site": args.site,
        "epoch": args.epoch,
        "delta": worst.delta,
        "budget": min(s.budget for s in statuses),
        "spent": worst.spent,
        "remaining": worst.remaining,
        "spent_by_helper": [s.spent for s in statuses],
        "rho": {
            "unit": RHO_UNIT,
            "budget": min(s.budget_units for s in statuses),
            "spent": worst.spent_units,
            "spent_by_helper": [s.spent_units for s in statuses],
        },
        "queries": list(queries.values()),
        "agree": not disagreements,
    }
    if disagreements:
        output["disagreements"] = disagreements
    print(json.dumps(output))
    if disagreements:
        print(f"ipa: error: the helpers' ledgers disagree: {_describe(disagreements)}", file=sys.stderr)
        return DISAGREE_STATUS
    return 0
