"""The gRPC servicers: thin adapters from wire messages to :class:`~ipa_helper.helper.Helper`.

Errors map to status codes: a bad argument or input is INVALID_ARGUMENT, an
unknown query NOT_FOUND, a wrong token PERMISSION_DENIED, a peer refusing
FAILED_PRECONDITION, a limit of this helper (or the budget) RESOURCE_EXHAUSTED,
a peer that cannot be reached UNAVAILABLE. The details say what was wrong, never a secret.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable, Iterator

import grpc

from ipa.errors import IpaError, TransportError
from ipa.mpc.channel import Peer
from ipa.mpc.reveal import reveal_to_outside
from ipa_helper.helper import Helper
from ipa_helper.ledger import BudgetError
from ipa_helper.limits import LimitError
from ipa_helper.params import spec_from_proto
from ipa_helper.peers import RefusedError, UnreachableError
from ipa_helper.queries import AccessDeniedError, QueryRecord, State, UnknownQueryError
from ipa_helper.transport import decode_message
from ipa_rpc.v1 import budget_pb2, budget_pb2_grpc, peer_pb2, peer_pb2_grpc, query_pb2, query_pb2_grpc

__all__ = ["BudgetServicer", "PeerServicer", "QueryServicer"]

_STATES = {
    State.AWAITING_UPLOAD: query_pb2.AWAITING_UPLOAD,
    State.RUNNING: query_pb2.RUNNING,
    State.COMPLETED: query_pb2.COMPLETED,
    State.FAILED: query_pb2.FAILED,
    State.CANCELLED: query_pb2.CANCELLED,
}


def _abort(context: grpc.ServicerContext, exc: IpaError) -> None:
    code = {
        UnknownQueryError: grpc.StatusCode.NOT_FOUND,
        AccessDeniedError: grpc.StatusCode.PERMISSION_DENIED,
        RefusedError: grpc.StatusCode.FAILED_PRECONDITION,
        BudgetError: grpc.StatusCode.RESOURCE_EXHAUSTED,
        LimitError: grpc.StatusCode.RESOURCE_EXHAUSTED,
        UnreachableError: grpc.StatusCode.UNAVAILABLE,
    }.get(type(exc), grpc.StatusCode.INVALID_ARGUMENT)
    context.abort(code, str(exc))


def _status(record: QueryRecord) -> query_pb2.QueryStatus:
    return query_pb2.QueryStatus(
        query_id=record.query_id,
        state=_STATES[record.state],
        phase=record.phase,
        progress=record.progress,
        error=record.error,
        rows=record.rows,
        invalid_reports=record.invalid_reports,
        phase_seconds=record.phase_seconds,
        bytes_sent=record.bytes_sent,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


class QueryServicer(query_pb2_grpc.QueryServicer):
    """The report collectors' service."""

    def __init__(self, helper: Helper) -> None:
        self._helper = helper

    def CreateQuery(self, request, context):  # noqa: N802
        try:
            return query_pb2.CreateQueryResponse(
                query_id=self._helper.create_query(
                    spec_from_proto(request.params), list(request.token_hashes)
                )
            )
        except IpaError as exc:
            _abort(context, exc)

    def Upload(self, request_iterator, context):  # noqa: N802
        first = next(request_iterator, None)
        if first is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty upload")

        def chunks() -> Iterator[bytes]:
            yield first.data
            for chunk in request_iterator:
                yield chunk.data

        try:
            return query_pb2.UploadResponse(bytes=self._helper.upload(first.query_id, first.token, chunks()))
        except IpaError as exc:
            _abort(context, exc)

    def GetStatus(self, request, context):  # noqa: N802
        try:
            return _status(self._helper.queries.get(request.query_id, request.token))
        except IpaError as exc:
            _abort(context, exc)

    def GetResults(self, request, context):  # noqa: N802
        try:
            sums = self._helper.results(request.query_id, request.token)
        except IpaError as exc:
            _abort(context, exc)
        left, right = reveal_to_outside(sums)
        return query_pb2.ResultShare(
            helper=self._helper.config.index,
            left=left.astype("<u8").tobytes(),
            right=right.astype("<u8").tobytes(),
        )

    def Cancel(self, request, context):  # noqa: N802
        try:
            return _status(self._helper.cancel(request.query_id, request.token))
        except IpaError as exc:
            _abort(context, exc)


class PeerServicer(peer_pb2_grpc.PeerServicer):
    """The other helpers' service: MPC messages, prepare and abort.

    ``identify(context)`` returns the caller's party index from its TLS
    certificate, or None on an insecure dev network (the claimed sender is
    then trusted). Only the two neighbours may call; only H1 may prepare.
    """

    def __init__(self, helper: Helper, identify: Callable[[grpc.ServicerContext], int | None]) -> None:
        self._helper = helper
        self._identify = identify
        party = helper.party
        self._neighbours = (Peer.NEXT.of(party), Peer.PREV.of(party))

    def _caller(self, context: grpc.ServicerContext, claimed: int) -> int:
        caller = self._identify(context)
        if claimed not in self._neighbours or caller not in (None, claimed):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "caller is not one of this helper's peers")
        return claimed

    def Send(self, request_iterator, context):  # noqa: N802
        try:
            query_id, step, sender, arrays = decode_message(request_iterator)
        except (TransportError, ValueError, TypeError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        self._caller(context, sender)
        try:
            self._helper.receive_message(query_id, sender, step, arrays)
        except UnknownQueryError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except TransportError as exc:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        return peer_pb2.SendAck()

    def Prepare(self, request, context):  # noqa: N802
        self._caller(context, 0)  # only H1 prepares queries
        try:
            self._helper.prepare(request.query_id, spec_from_proto(request.params), request.token_hash)
        except LimitError as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except IpaError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return peer_pb2.PrepareResponse()

    def Abort(self, request, context):  # noqa: N802
        with contextlib.suppress(UnknownQueryError):  # never prepared here: nothing to abort
            self._helper.abort_from_peer(request.query_id, self._identify(context), request.reason)
        return peer_pb2.AbortResponse()


class BudgetServicer(budget_pb2_grpc.BudgetServicer):
    """Read-only view of this helper's ledger for one (site, epoch)."""

    def __init__(self, helper: Helper) -> None:
        self._helper = helper

    def Inspect(self, request, context):  # noqa: N802
        ledger = self._helper.ledger
        spent = ledger.spent(request.site, request.epoch)
        spends = [
            budget_pb2.QuerySpend(query_id=q.query_id, epsilon=q.epsilon, state=q.state)
            for q in ledger.queries(request.site, request.epoch)
        ]
        return budget_pb2.BudgetStatus(
            helper=self._helper.config.index,
            site=request.site,
            epoch=request.epoch,
            budget=ledger.epoch_budget,
            spent=spent,
            remaining=max(ledger.epoch_budget - spent, 0.0),
            queries=spends,
        )
