"""``ipa budget``: a site's privacy budget in one epoch, as every helper's ledger has it.

Prints ``{"site", "epoch", "budget", "spent", "remaining", "queries": [{"query_id",
"epsilon", "state"}, ...]}`` from H1's ledger, after checking that H2 and H3
agree on the spend (a disagreement is an error: the ledgers must move together).
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
    spends = {s.helper: round(s.spent, 9) for s in statuses}
    if len(set(spends.values())) != 1:
        raise IpaError(f"the helpers' ledgers disagree: spent by helper {spends}")
    first = statuses[0]
    output = {
        "site": first.site,
        "epoch": first.epoch,
        "budget": first.budget,
        "spent": first.spent,
        "remaining": first.remaining,
        "queries": [{"query_id": q.query_id, "epsilon": q.epsilon, "state": q.state} for q in first.queries],
    }
    print(json.dumps(output))
    return 0
