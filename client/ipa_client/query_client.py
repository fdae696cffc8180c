"""Talking to a helper network: create a query, upload, follow progress, rebuild the result.

The helpers' addresses and TLS certificates come from ``network.toml``
(``address`` and ``cert`` of each ``[[helpers]]`` entry; ``cert`` is relative
to the file). Each helper's certificate is pinned: the client trusts exactly
it for that helper. The client proves which report collector it is with the
client certificate of its :class:`~ipa_client.identity.Identity` (mutual
TLS); the helpers serve it only for the sites that authorised it. Every call
has a deadline.

Before it creates a query the client checks that all three helpers answer
(their health service, within ``connect_timeout``): a helper that is down,
presents another certificate or does not answer is named with the reason
(:class:`HelperUnreachableError`) at once, not after a query deadline.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ipa.attribution.config import QueryConfig
from ipa.certs import common_name
from ipa.crypto.binding import Binding
from ipa.dp.noise import NO_NOISE, NoiseStatement, noise_statement
from ipa.errors import ConfigError, IpaError, TransportError
from ipa.mpc.replicated import AShares
from ipa.mpc.sharing import reconstruct
from ipa.network import Network
from ipa.query import QuerySpec, params_digest
from ipa.reports.decode import InvalidReportPolicy
from ipa_client.identity import Identity
from ipa_rpc import (
    CHUNK_BYTES,
    COLLECTOR_METADATA,
    MESSAGE_LIMITS,
    PARAMS_DIGEST_KEY,
    QUERY_ID_KEY,
    TOKEN_KEY,
)
from ipa_rpc.params import params_fields, params_message
from ipa_rpc.reach import unreachable_reason
from ipa_rpc.v1 import query_pb2, query_pb2_grpc

__all__ = [
    "Endpoint",
    "HelperUnreachableError",
    "QueryClient",
    "QueryFailedError",
    "Release",
    "endpoints",
    "query_params",
    "upload_digest",
]

_FINAL = (query_pb2.COMPLETED, query_pb2.FAILED, query_pb2.CANCELLED)


class QueryFailedError(IpaError):
    """The network refused or failed the query; the message says which helper and why."""


class HelperUnreachableError(QueryFailedError):
    """A helper cannot be reached: down, another certificate than network.toml's, or silent."""


@dataclass(frozen=True)
class Endpoint:
    """Where helper ``index`` (1, 2, 3) serves report collectors, and its certificate."""

    index: int
    address: str
    cert: bytes | None


@dataclass(frozen=True)
class Release:
    """A query's released sums and the noise they carry.

    Unpacks as ``query_id, sums = release`` for callers that need only those.
    """

    query_id: str
    sums: np.ndarray
    noise: NoiseStatement
    delta: float | None = None  # the network's δ the noise was calibrated at (None: no noise)

    def __iter__(self) -> Iterator[object]:
        yield self.query_id
        yield self.sums

    def to_json(self) -> dict[str, object]:
        """``{"query_id", "sums": [...], "noise": {"mechanism", "std": [...], "ci95": [...]}}``."""
        return {"query_id": self.query_id, "sums": self.sums.tolist(), "noise": self.noise.to_json()}


def endpoints(network_path: str | Path) -> list[Endpoint]:
    """The three helpers' endpoints from ``network.toml``; ConfigError if one lacks an address."""
    path = Path(network_path)
    network = Network.load(path)
    found = []
    for entry in network.helpers:
        address = entry.extra.get("address")
        if not isinstance(address, str):
            raise ConfigError(f"{path}: helper {entry.helper + 1} has no address (run ipa keygen --host)")
        cert = entry.extra.get("cert")
        try:
            pem = (path.parent / cert).read_bytes() if isinstance(cert, str) else None
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot read helper {entry.helper + 1}'s certificate {cert}: {exc.strerror or exc}"
            ) from None
        found.append(Endpoint(entry.helper + 1, address, pem))
    return found


def query_params(
    binding: Binding,
    config: QueryConfig,
    *,
    epsilon: float = 0.0,
    delta: float = 0.0,
    no_noise: bool = False,
    drop_invalid: bool = False,
    last_epoch: int | None = None,
    security: str = "",
) -> query_pb2.QueryParams:
    """The wire parameters of a query for the querying site of ``binding``, epochs ``epoch..last_epoch``.

    ``security`` ``""`` leaves the mode to the helpers: malicious unless their
    configs allow semi-honest queries (``ipa query`` always names one).
    """
    policy = InvalidReportPolicy.DROP if drop_invalid else InvalidReportPolicy.FAIL
    last = binding.epoch if last_epoch is None else last_epoch
    spec = QuerySpec(binding, config, epsilon, delta, no_noise, policy, last, security)
    return params_message(spec.fields())


def upload_digest(params: query_pb2.QueryParams, query_id: str) -> bytes:
    """What every upload of query ``query_id`` carries: the digest of its parameters (``ipa.query``).

    Each helper compares it with the parameters it was asked to run, so a
    leader that forwards other ones than the collector's is caught.
    """
    return params_digest(QuerySpec.from_fields(params_fields(params)), query_id)


def _details(exc: grpc.RpcError) -> str:
    return exc.details() or exc.code().name


class QueryClient:
    """A report collector's connection to the three helpers of a network, as ``identity``."""

    def __init__(
        self,
        helpers: Sequence[Endpoint],
        identity: Identity,
        *,
        insecure: bool = False,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        tokens: Sequence[bytes] | None = None,
    ) -> None:
        if not isinstance(identity, Identity):
            raise ConfigError(
                "a report collector identity is needed (ipa keygen writes collectors/NAME.toml)"
            )
        self.identity = identity
        self._timeout = timeout
        # Only an insecure (development) network trusts a claimed name; TLS proves it.
        self._metadata = ((COLLECTOR_METADATA, identity.name),) if insecure else ()
        self._connect_timeout = connect_timeout
        self._helpers = list(helpers)
        self._channels = []
        for h in helpers:
            if insecure:
                channel = grpc.insecure_channel(h.address, options=MESSAGE_LIMITS)
            elif h.cert is None:
                raise ConfigError(f"helper {h.index} has no certificate in network.toml (or use --insecure)")
            else:
                options = [*MESSAGE_LIMITS, ("grpc.ssl_target_name_override", common_name(h.index))]
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=h.cert, private_key=identity.key, certificate_chain=identity.cert
                )
                channel = grpc.secure_channel(h.address, credentials, options=options)
            self._channels.append(channel)
        self._stubs = [query_pb2_grpc.QueryStub(c) for c in self._channels]
        # One secret per helper: each helper learns only the hash of its own, so no
        # helper (not even the leader, which sees all three hashes) can act as us at another.
        # ``tokens``: those of an earlier query (from its receipt), to fetch its result.
        self._tokens = list(tokens) if tokens is not None else [secrets.token_bytes(32) for _ in range(3)]
        self._digests: dict[str, bytes] = {}  # of the parameters of each query this client created

    @property
    def tokens(self) -> list[bytes]:
        """The collector's secret per-helper tokens (kept in a receipt by ``ipa query``)."""
        return list(self._tokens)

    @property
    def channels(self) -> list[grpc.Channel]:
        """The three helpers' channels (for other services, e.g. Budget: pass :attr:`metadata`)."""
        return self._channels

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata every call carries (the collector's name, on an insecure network only)."""
        return self._metadata

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> QueryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_reachable(self) -> None:
        """HelperUnreachableError naming every helper that does not answer, and why; the three in parallel."""
        problems: list[str | None] = [None] * len(self._stubs)

        def probe(helper: int) -> None:
            stub = health_pb2_grpc.HealthStub(self._channels[helper])
            try:
                # typeshed's HealthStub lists no methods
                stub.Check(health_pb2.HealthCheckRequest(), timeout=self._connect_timeout)  # type: ignore[attr-defined]
            except grpc.RpcError as exc:  # a helper that answers, even with an error, is reachable
                if unreachable_reason(exc, self._connect_timeout) is not None:
                    problems[helper] = self._unreachable(helper, exc, self._connect_timeout)

        threads = [threading.Thread(target=probe, args=(h,)) for h in range(len(self._stubs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        found = [p for p in problems if p]
        if found:
            raise HelperUnreachableError("; ".join(found))

    def _unreachable(self, helper: int, exc: grpc.RpcError, timeout: float) -> str:
        """``H3 (host:port) cannot be reached: <why>``, or the helper's own answer if it gave one."""
        why = unreachable_reason(exc, timeout) or _details(exc)
        return f"H{helper + 1} ({self._helpers[helper].address}) cannot be reached: {why}"

    def create(self, params: query_pb2.QueryParams) -> str:
        """Create a query at the leader; QueryFailedError with the reason if any helper refuses.

        HelperUnreachableError first if any helper cannot be reached.
        """
        self.check_reachable()
        try:
            hashes = [hashlib.sha256(t).digest() for t in self._tokens]
            request = query_pb2.CreateQueryRequest(params=params, token_hashes=hashes)
            query_id = (
                self._stubs[0].CreateQuery(request, timeout=self._timeout, metadata=self._metadata).query_id
            )
        except grpc.RpcError as exc:
            if unreachable_reason(exc, self._timeout) is not None:
                raise HelperUnreachableError(self._unreachable(0, exc, self._timeout)) from None
            if exc.code() is grpc.StatusCode.UNAVAILABLE:  # H1 could not reach a peer: H1 says which
                raise HelperUnreachableError(f"the query was not created: {_details(exc)}") from None
            raise QueryFailedError(f"H1 refused the query: {_details(exc)}") from None
        self._digests[query_id] = upload_digest(params, query_id)
        return query_id

    def upload_metadata(self, query_id: str, helper: int) -> tuple[tuple[str, str], ...]:
        """The metadata of an upload to helper ``helper`` (0, 1, 2) of a query this client created.

        The query id, the collector's token for that helper and the digest of
        the query's parameters; QueryFailedError if this client did not create it.
        """
        if query_id not in self._digests:
            raise QueryFailedError(f"query {query_id} was not created by this client: it cannot upload")
        return (
            *self._metadata,
            (QUERY_ID_KEY, query_id),
            (TOKEN_KEY, self._tokens[helper].hex()),
            (PARAMS_DIGEST_KEY, self._digests[query_id].hex()),
        )

    def upload(
        self, query_id: str, batches: Sequence[bytes], on_sent: Callable[[int], None] | None = None
    ) -> None:
        """Send each helper its own batch, the three in parallel; ``on_sent(n)`` per chunk of n bytes.

        Each upload carries the digest of the query's parameters (see
        :meth:`upload_metadata`): only the query's creator uploads.
        """
        errors: list[str] = []
        metadata = [self.upload_metadata(query_id, helper) for helper in range(3)]

        def send(helper: int) -> None:
            data = memoryview(batches[helper])

            def chunks():
                for start in range(0, max(len(data), 1), CHUNK_BYTES):
                    chunk = bytes(data[start : start + CHUNK_BYTES])
                    yield query_pb2.UploadChunk(data=chunk)
                    if on_sent:
                        on_sent(len(chunk))

            try:
                self._stubs[helper].Upload(chunks(), timeout=self._timeout, metadata=metadata[helper])
            except grpc.RpcError as exc:
                if unreachable_reason(exc, self._timeout) is not None:
                    errors.append(self._unreachable(helper, exc, self._timeout))
                else:
                    errors.append(f"H{helper + 1} refused the upload: {_details(exc)}")

        # Daemons: an interrupted client (Ctrl-C) cancels the query and exits without waiting for them.
        threads = [threading.Thread(target=send, args=(h,), daemon=True) for h in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise QueryFailedError("; ".join(errors))

    def status(self, query_id: str) -> list[query_pb2.QueryStatus]:
        """Each helper's status of the query; TransportError names a helper that does not answer."""
        return [self.helper_status(query_id, helper) for helper in range(3)]

    def helper_status(self, query_id: str, helper: int) -> query_pb2.QueryStatus:
        """The status of the query at helper ``helper`` (0, 1, 2)."""
        try:
            return self._stubs[helper].GetStatus(
                self._ref(query_id, helper), timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            if unreachable_reason(exc, self._timeout) is not None:
                raise TransportError(self._unreachable(helper, exc, self._timeout)) from None
            raise TransportError(f"H{helper + 1} gave no status: {_details(exc)}") from None

    def wait(
        self,
        query_id: str,
        on_progress: Callable[[str, float], None] | None = None,
        poll: float = 0.2,
        deadline: float = 3600.0,
    ) -> list[query_pb2.QueryStatus]:
        """Poll until every helper is done; QueryFailedError as soon as one has failed."""
        end = time.monotonic() + deadline
        while True:
            try:
                statuses = self.status(query_id)
            except TransportError as exc:
                raise QueryFailedError(f"query {query_id}: {exc}") from None
            failed = [s for s in statuses if s.state in (query_pb2.FAILED, query_pb2.CANCELLED)]
            if failed:
                helper = statuses.index(failed[0]) + 1
                raise QueryFailedError(f"query {query_id} failed at H{helper}: {failed[0].error}")
            slowest = min(statuses, key=lambda s: s.progress)
            if on_progress:
                on_progress(slowest.phase, slowest.progress)
            if all(s.state == query_pb2.COMPLETED for s in statuses):
                return statuses
            if time.monotonic() > end:
                raise QueryFailedError(f"query {query_id} did not finish within {deadline:g} s")
            time.sleep(poll)

    def results(self, query_id: str) -> np.ndarray:
        """The released sums (see :meth:`release`, which also says what noise they carry)."""
        return self.release(query_id).sums

    def release(self, query_id: str) -> Release:
        """Fetch the three result shares and rebuild the sums (checking that the copies agree).

        The sums are signed 64-bit integers: DP noise can make a small sum
        negative. The release states the noise every helper says it added.
        """
        shares, added = [], []
        for helper, stub in enumerate(self._stubs):
            try:
                share = stub.GetResults(
                    self._ref(query_id, helper), timeout=self._timeout, metadata=self._metadata
                )
            except grpc.RpcError as exc:
                if unreachable_reason(exc, self._timeout) is not None:
                    raise HelperUnreachableError(self._unreachable(helper, exc, self._timeout)) from None
                raise QueryFailedError(f"H{helper + 1} gave no result: {_details(exc)}") from None
            left, right = (np.frombuffer(b, "<u8").astype(np.uint64) for b in (share.left, share.right))
            shares.append(AShares(left, right))
            added.append(share.noise)
        sums = reconstruct(shares).view(np.int64)
        mechanisms = {a.mechanism or NO_NOISE for a in added}
        if len(mechanisms) != 1:
            raise QueryFailedError(
                f"query {query_id}: the helpers added different noise ({sorted(mechanisms)})"
            )
        noise = noise_statement([a.scale for a in added], len(sums), mechanisms.pop())
        delta = added[0].delta if noise.mechanism != NO_NOISE else None
        return Release(query_id, sums, noise, delta)

    def cancel(self, query_id: str, timeout: float | None = None) -> list[query_pb2.QueryStatus | None]:
        """Cancel the query at every helper; each one's status after it (None: it did not answer).

        A helper refunds the query's ε where it is still only reserved; a
        query that had already completed there stays completed.
        """
        statuses: list[query_pb2.QueryStatus | None] = []
        for helper, stub in enumerate(self._stubs):
            try:
                statuses.append(
                    stub.Cancel(
                        self._ref(query_id, helper), timeout=timeout or self._timeout, metadata=self._metadata
                    )
                )
            except grpc.RpcError:  # a helper that is gone has nothing to cancel
                statuses.append(None)
        return statuses

    def _ref(self, query_id: str, helper: int) -> query_pb2.QueryRef:
        return query_pb2.QueryRef(query_id=query_id, token=self._tokens[helper])
