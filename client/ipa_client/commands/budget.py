"""``ipa budget``: a site's privacy budget in one epoch, as every helper's ledger has it.

Prints ``{"site", "epoch", "budget", "spent", "remaining", "spent_by_helper": [H1, H2, H3],
"queries": [{"query_id", "epsilon", "state"}, ...]}``. The ledgers can differ
for a while: a helper killed between its peers' commit and its own refunds
its reserved spend on restart while the peers' spends stand. ``spent`` is
therefore the largest of the three, and ``queries`` lists each query once
with the state that counts (committed over reserved over refunded).
"""

from __future__ import annotations

import argparse
import json

import grpc

from ipa.errors import IpaError
from ipa_client.commands._types import non_negative_int
from ipa_client.query_client import QueryClient, endpoints
from ipa_rpc.v1 import budget_pb2, budget_pb2_grpc

__all__ = ["HELP", "NAME", "add_arguments", "run"]

_WEIGHT = {"refunded": 0, "reserved": 1, "committed": 2}

NAME = "budget"
HELP = "show a site's privacy budget spend in one epoch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", required=True, metavar="FILE", help="the network.toml of the helpers")
    parser.add_argument("--site", required=True)
    parser.add_argument("--epoch", type=non_negative_int, required=True)
    parser.add_argument("--insecure", action="store_true", help="no TLS: development helpers only")


def run(args: argparse.Namespace) -> int:
    request = budget_pb2.BudgetRequest(site=args.site, epoch=args.epoch)
    with QueryClient(endpoints(args.network), insecure=args.insecure) as client:
        statuses = []
        for helper, channel in enumerate(client.channels):
            try:
                statuses.append(budget_pb2_grpc.BudgetStub(channel).Inspect(request, timeout=30))
            except grpc.RpcError as exc:
                raise IpaError(f"H{helper + 1} did not answer: {exc.details() or exc.code().name}") from None
    spent = max(s.spent for s in statuses)
    budget = min(s.budget for s in statuses)
    queries: dict[str, dict] = {}
    for status in statuses:
        for q in status.queries:
            known = queries.get(q.query_id)
            if known is None or _WEIGHT[q.state] > _WEIGHT[known["state"]]:
                queries[q.query_id] = {"query_id": q.query_id, "epsilon": q.epsilon, "state": q.state}
    output = {
        "site": args.site,
        "epoch": args.epoch,
        "budget": budget,
        "spent": spent,
        "remaining": max(budget - spent, 0.0),
        "spent_by_helper": [s.spent for s in statuses],
        "queries": list(queries.values()),
    }
    print(json.dumps(output))
    return 0
