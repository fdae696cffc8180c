"""The gRPC servicers: thin adapters from wire messages to :class:`~ipa_helper.helper.Helper`.

Every Query and Budget call is first authenticated and authorised
(``ipa_helper.collectors``): the caller's client certificate names a
collector of this helper's config, which must serve the query's or budget's
site, and a query's calls must come from the collector that created it (the
report collector its reports are bound to). Nothing else happens before.

Errors map to status codes: a bad argument or input is INVALID_ARGUMENT, an
unknown query NOT_FOUND, an unknown caller UNAUTHENTICATED, a wrong token or
a collector asking for what it may not PERMISSION_DENIED, a peer refusing
FAILED_PRECONDITION, a limit of this helper (or the budget) RESOURCE_EXHAUSTED,
a peer that cannot be reached UNAVAILABLE. The details say what was wrong, never a secret.
"""

from __future__ import annotations

import contextlib
import resource
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn

import grpc

from ipa.dp.accounting import EpochBudget, noise_scale
from ipa.errors import IpaError, TransportError
from ipa.mpc.channel import Peer
from ipa.mpc.reveal import reveal_to_outside
from ipa.query import QuerySpec
from ipa_helper.collectors import CollectorConfig, Collectors, NotAuthorisedError, UnauthenticatedError
from ipa_helper.helper import Helper
from ipa_helper.ledger import BudgetError
from ipa_helper.limits import LimitError
from ipa_helper.params import spec_from_proto
from ipa_helper.peers import RefusedError, UnreachableError
from ipa_helper.queries import AccessDeniedError, QueryRecord, State, UnknownQueryError
from ipa_helper.transport import decode_message
from ipa_rpc import PARAMS_DIGEST_KEY, QUERY_ID_KEY, TOKEN_KEY
from ipa_rpc.v1 import budget_pb2, budget_pb2_grpc, peer_pb2, peer_pb2_grpc, query_pb2, query_pb2_grpc

__all__ = ["BudgetServicer", "PeerServicer", "QueryServicer"]

_STATES = {
    State.AWAITING_UPLOAD: query_pb2.AWAITING_UPLOAD,
    State.RUNNING: query_pb2.RUNNING,
    State.COMPLETED: query_pb2.COMPLETED,
    State.FAILED: query_pb2.FAILED,
    State.CANCELLED: query_pb2.CANCELLED,
}


def _abort(context: grpc.ServicerContext, exc: IpaError) -> NoReturn:
    code = {
        UnknownQueryError: grpc.StatusCode.NOT_FOUND,
        AccessDeniedError: grpc.StatusCode.PERMISSION_DENIED,
        UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
        NotAuthorisedError: grpc.StatusCode.PERMISSION_DENIED,
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


def _noise_added(spec: QuerySpec) -> query_pb2.NoiseAdded:
    """What this helper added to each sum of a query of ``spec`` (the same scale its noise hook used)."""
    if spec.no_noise:
        return query_pb2.NoiseAdded(mechanism="none")
    return query_pb2.NoiseAdded(
        mechanism="discrete_gaussian",
        scale=noise_scale(spec.epsilon, spec.delta, spec.config.cap),
        epsilon=spec.epsilon,
        delta=spec.delta,
    )


class QueryServicer(query_pb2_grpc.QueryServicer):
    """The report collectors' service."""

    def __init__(self, helper: Helper, collectors: Collectors) -> None:
        self._helper = helper
        self._collectors = collectors
        self._uploads = threading.BoundedSemaphore(helper.config.max_uploads)

    def _caller(self, context: grpc.ServicerContext) -> CollectorConfig:
        try:
            return self._collectors.identify(context)
        except IpaError as exc:
            _abort(context, exc)
            raise  # not reached: abort raises

    def _own_query(self, context: grpc.ServicerContext, query_id: str) -> None:
        """Abort unless the caller is the collector of query ``query_id``."""
        caller = self._caller(context)
        try:
            record = self._helper.queries.get(query_id)
            if record.spec.binding.report_collector != caller.name:
                raise AccessDeniedError(f"query {query_id} belongs to another report collector")
        except IpaError as exc:
            _abort(context, exc)

    def CreateQuery(self, request, context):  # noqa: N802
        caller = self._caller(context)
        try:
            params = request.params
            self._collectors.authorise_query(caller.name, params.site, params.report_collector)
            return query_pb2.CreateQueryResponse(
                query_id=self._helper.create_query(spec_from_proto(params), list(request.token_hashes))
            )
        except IpaError as exc:
            _abort(context, exc)

    def Upload(  # noqa: N802
        self, request_iterator: Iterator[query_pb2.UploadChunk], context: grpc.ServicerContext
    ) -> query_pb2.UploadResponse:
        """Check the caller (certificate, metadata) before reading any chunk; then stream, with deadlines."""
        self._caller(context)
        metadata = {key: str(value) for key, value in context.invocation_metadata()}
        try:
            token = bytes.fromhex(metadata.get(TOKEN_KEY, ""))
        except ValueError:
            token = b""
        try:
            params = bytes.fromhex(metadata.get(PARAMS_DIGEST_KEY, ""))
        except ValueError:
            params = b""
        query_id = metadata.get(QUERY_ID_KEY, "")
        if not query_id or not token:
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f"an upload names its query and token in the metadata ({QUERY_ID_KEY}, {TOKEN_KEY})",
            )
        self._own_query(context, query_id)
        try:
            self._helper.queries.get(query_id, token)
        except IpaError as exc:
            _abort(context, exc)
        if not self._uploads.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this helper takes at most {self._helper.config.max_uploads} uploads at once",
            )
        try:
            chunks = (chunk.data for chunk in request_iterator)
            size = self._helper.upload(query_id, token, params, chunks, interrupt=context.cancel)
        except IpaError as exc:
            _abort(context, exc)
        except grpc.RpcError:  # the stream broke or the watchdog cancelled it: the query has failed
            context.abort(grpc.StatusCode.CANCELLED, "the upload was interrupted")
        finally:
            self._uploads.release()
        return query_pb2.UploadResponse(bytes=size)

    def GetStatus(self, request, context):  # noqa: N802
        self._own_query(context, request.query_id)
        try:
            return _status(self._helper.queries.get(request.query_id, request.token))
        except IpaError as exc:
            _abort(context, exc)

    def GetResults(self, request, context):  # noqa: N802
        self._own_query(context, request.query_id)
        try:
            sums = self._helper.results(request.query_id, request.token)
        except IpaError as exc:
            _abort(context, exc)
        left, right = reveal_to_outside(sums)
        return query_pb2.ResultShare(
            helper=self._helper.config.index,
            left=left.astype("<u8").tobytes(),
            right=right.astype("<u8").tobytes(),
            noise=_noise_added(self._helper.queries.get(request.query_id).spec),
        )

    def Cancel(self, request, context):  # noqa: N802
        self._own_query(context, request.query_id)
        try:
            return _status(self._helper.cancel(request.query_id, request.token))
        except IpaError as exc:
            _abort(context, exc)


class PeerServicer(peer_pb2_grpc.PeerServicer):
    """The other helpers' service: MPC messages, prepare and abort.

    ``identify(context)`` returns the caller's party index from its TLS
    certificate, or None on an insecure dev network (the claimed sender is
    then trusted). Only the two neighbours may call; only H1 may prepare,
    and this helper checks again, against its own config, that the query's
    report collector serves its site (a leader cannot admit a query for a
    collector this helper does not know).
    """

    def __init__(
        self,
        helper: Helper,
        identify: Callable[[grpc.ServicerContext], int | None],
        collectors: Collectors,
    ) -> None:
        self._helper = helper
        self._identify = identify
        self._collectors = collectors
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
            params = request.params  # H1 checked that the caller is params.report_collector
            self._collectors.authorise_query(params.report_collector, params.site, params.report_collector)
            self._helper.prepare(request.query_id, spec_from_proto(params), request.token_hash)
        except LimitError as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except IpaError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return peer_pb2.PrepareResponse()

    def Abort(self, request, context):  # noqa: N802
        with contextlib.suppress(UnknownQueryError):  # never prepared here: nothing to abort
            self._helper.abort_from_peer(request.query_id, self._identify(context), request.reason)
        return peer_pb2.AbortResponse()


    def Outcome(self, request, context):  # noqa: N802
        self._identify(context)  # a configured peer's certificate (UNAUTHENTICATED otherwise)
        return peer_pb2.OutcomeResponse(state=self._helper.outcome(request.query_id))


class BudgetServicer(budget_pb2_grpc.BudgetServicer):
    """Read-only view of this helper's ledger for one (site, epoch), for the site's collectors."""

    def __init__(self, helper: Helper, collectors: Collectors, budget: EpochBudget) -> None:
        self._helper = helper
        self._collectors = collectors
        self._budget = budget

    def Inspect(self, request, context):  # noqa: N802
        try:
            self._collectors.authorise_site(self._collectors.identify(context), request.site)
        except IpaError as exc:
            _abort(context, exc)
        ledger, budget = self._helper.ledger, self._budget
        spent = ledger.spent(request.site, request.epoch)
        remaining = max(budget.units - spent, 0)
        spends = [
            budget_pb2.QuerySpend(query_id=q.query_id, epsilon=q.epsilon, state=q.state, rho_units=q.rho)
            for q in ledger.queries(request.site, request.epoch)
        ]
        return budget_pb2.BudgetStatus(
            helper=self._helper.config.index,
            site=request.site,
            epoch=request.epoch,
            budget=budget.epsilon,
            spent=budget.epsilon_of(spent),
            remaining=budget.epsilon_of(remaining),
            queries=spends,
            delta=budget.delta,
            budget_units=budget.units,
            spent_units=spent,
        )
