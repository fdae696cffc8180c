"""The report collector: from events and encrypted match keys to three per-helper upload batches.

A report collector runs a query for one querying site, report collector
name, match-key provider and first epoch (a
:class:`~ipa.crypto.binding.Binding`), and a last epoch. It takes reports
from many sites: each report's encrypted match key is bound to the site
where its event happened and the epoch its user agent was in. For each
event it holds that encrypted match key and its own fields (timestamp,
breakdown key or trigger value, constraint id). :meth:`uploads` then

1. checks every field against the query's widths (InputError naming the
   event, by insertion order, and the field),
2. presorts the reports by (timestamp, sources first), stable
   (:func:`ipa.attribution.rows.presort_order`),
3. secret-shares its fields (:func:`ipa.attribution.rows.share_collector_fields`),
4. writes one batch per helper (:func:`ipa.reports.batch.encode_batch`): the user
   agents' sealed parts untouched, its own shares sealed per batch.

The collector does not check the match keys' bindings: the helpers do,
refuse (or drop) reports made for another collector or provider or outside
the query's epochs, and neutralise a report made off the querying site on
the querying side (``docs/cross-site.md``).
:meth:`submit` runs the query on a helper network over gRPC.

:func:`simulate_user_agents` plays one user agent per distinct ``match_key``
of an event set (the event CSV format's plain match keys), answering on
each event's own site: the test and demo path from ``ipa gen-events``
output to encrypted reports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ipa._checks import integer
from ipa.attribution.config import QueryConfig
from ipa.attribution.rows import COLLECTOR_FIELDS, check_ranges, presort_order, share_collector_fields
from ipa.crypto.binding import MAX_EPOCH, Binding
from ipa.errors import InputError, InvalidReportError, IpaError
from ipa.events import Events, concat
from ipa.network import Network
from ipa.reports.batch import DEFAULT_CHUNK_ROWS, encode_batch
from ipa.reports.layout import FIELD_RECORD
from ipa.reports.match_key import EncryptedMatchKey
from ipa_client.query_client import QueryClient, Release, query_params
from ipa_client.user_agent import UserAgent

__all__ = ["ReportCollector", "simulate_user_agents"]

_U64 = 2**64 - 1
_PROGRESS_EVERY = 250  # users between two progress reports of simulate_user_agents


class ReportCollector:
    """Reports for one query context; :meth:`uploads` makes the three helpers' batches.

    ``binding`` names the querying site and the query's first epoch;
    ``last_epoch`` (default: the first) its last.
    """

    def __init__(
        self, network: Network, binding: Binding, config: QueryConfig, *, last_epoch: int | None = None
    ) -> None:
        if not isinstance(network, Network):
            raise InputError(f"network must be an ipa.network.Network, got {type(network).__name__}")
        if not isinstance(binding, Binding):
            raise InputError(f"binding must be an ipa.crypto.binding.Binding, got {type(binding).__name__}")
        if not isinstance(config, QueryConfig):
            raise InputError(f"config must be a QueryConfig, got {type(config).__name__}")
        self.network, self.binding, self.config = network, binding, config
        self.last_epoch = integer(
            "last_epoch", binding.epoch if last_epoch is None else last_epoch, binding.epoch, MAX_EPOCH
        )
        self._match_keys: list[EncryptedMatchKey] = []
        self._blocks: list[Events] = []
        self._pending: list[tuple[int, bool, int, int, int]] = []

    def __len__(self) -> int:
        return len(self._match_keys)

    def add_source(
        self,
        match_key: EncryptedMatchKey | bytes,
        *,
        timestamp: int,
        breakdown_key: int,
        constraint_id: int = 0,
    ) -> None:
        """Add a source report (an impression or click) with its breakdown key."""
        self._add(match_key, timestamp, False, breakdown_key, 0, constraint_id)

    def add_trigger(
        self,
        match_key: EncryptedMatchKey | bytes,
        *,
        timestamp: int,
        trigger_value: int,
        constraint_id: int = 0,
    ) -> None:
        """Add a trigger report (a conversion) with its value."""
        self._add(match_key, timestamp, True, 0, trigger_value, constraint_id)

    def add_events(self, events: Events, match_keys: Sequence[EncryptedMatchKey | bytes]) -> None:
        """Add one report per event; ``match_keys[r]`` is event r's encrypted match key.

        The events' own ``match_key`` column is not used (a real report
        collector never sees match keys).
        """
        if len(match_keys) != len(events):
            raise InputError(f"need one encrypted match key per event: {len(match_keys)} for {len(events)}")
        parsed = [self._parse(mk, len(self) + r) for r, mk in enumerate(match_keys)]
        self._flush()
        self._blocks.append(events)
        self._match_keys.extend(parsed)

    def uploads(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple[bytes, bytes, bytes]:
        """The upload batches for H1, H2 and H3, each holding every report, presorted."""
        self._flush()
        events = concat(self._blocks)
        check_ranges(events, self.config, COLLECTOR_FIELDS)
        order = presort_order(events)
        events = events.take(order)
        match_keys = [self._match_keys[r] for r in order.tolist()]
        shares = share_collector_fields(events, self.config)
        batches = []
        for helper, public_key in enumerate(self.network.public_keys):
            fields = np.zeros(len(events), dtype=FIELD_RECORD)
            for name in COLLECTOR_FIELDS:
                fields[name][:, 0] = shares[name][helper].left
                fields[name][:, 1] = shares[name][helper].right
            batches.append(
                encode_batch(public_key, self.binding, match_keys, fields, chunk_rows, self.last_epoch)
            )
        return batches[0], batches[1], batches[2]

    def submit(
        self,
        client: QueryClient,
        *,
        epsilon: float = 0.0,
        delta: float = 0.0,
        no_noise: bool = False,
        drop_invalid: bool = False,
        security: str = "",
        on_progress: Callable[[str, float], None] | None = None,
        on_created: Callable[[str], None] | None = None,
        on_upload: Callable[[int, int], None] | None = None,
    ) -> Release:
        """Run the query on the client's network: its release (query id, sums and their noise).

        ``delta`` 0 is the network's δ (another value is refused unless it is
        the network's). ``security`` is ``"malicious"``, ``"semi-honest"`` or
        ``""`` (the helpers' default). The release unpacks as ``query_id, sums``.

        The batches are made first, so a bad field fails before any helper
        hears of the query; if an upload fails, the query is cancelled.
        Raises QueryFailedError with the refusing or failing helper's reason.
        ``on_progress(phase, fraction)`` hears ``("prepare", 0)`` and
        ``("upload", 0)`` from the client, then every helper phase (of the
        slowest helper); ``on_created(query_id)`` as soon as the query
        exists (so an interrupted caller can cancel it); ``on_upload(n, total)``
        for every n of the total bytes sent, from the upload threads.
        """
        if client.identity.name != self.binding.report_collector:
            raise InputError(
                f"the reports are bound to report collector {self.binding.report_collector!r}, "
                f"but the client is {client.identity.name!r}"
            )
        if on_progress:
            on_progress("prepare", 0.0)
        batches = self.uploads()
        params = query_params(
            self.binding,
            self.config,
            last_epoch=self.last_epoch,
            epsilon=epsilon,
            delta=delta,
            no_noise=no_noise,
            drop_invalid=drop_invalid,
            security=security,
        )
        query_id = client.create(params)
        if on_created:
            on_created(query_id)
        if on_progress:
            on_progress("upload", 0.0)
        try:
            total = sum(len(batch) for batch in batches)
            client.upload(query_id, batches, on_sent=(lambda n: on_upload(n, total)) if on_upload else None)
        except IpaError:
            client.cancel(query_id)
            raise
        client.wait(query_id, on_progress)
        return client.release(query_id)

    def _add(
        self,
        match_key: EncryptedMatchKey | bytes,
        timestamp: int,
        is_trigger: bool,
        breakdown_key: int,
        trigger_value: int,
        constraint_id: int,
    ) -> None:
        row = (
            integer("timestamp", timestamp, 0, _U64),
            is_trigger,
            integer("breakdown_key", breakdown_key, 0, _U64),
            integer("trigger_value", trigger_value, 0, _U64),
            integer("constraint_id", constraint_id, 0, _U64),
        )
        parsed = self._parse(match_key, len(self))
        self._pending.append(row)
        self._match_keys.append(parsed)

    def _parse(self, match_key: EncryptedMatchKey | bytes, index: int) -> EncryptedMatchKey:
        if isinstance(match_key, EncryptedMatchKey):
            emk = match_key
        elif isinstance(match_key, bytes | bytearray | memoryview):
            try:
                emk = EncryptedMatchKey.from_bytes(bytes(match_key))
            except InvalidReportError as exc:
                raise InputError(f"report {index}: malformed encrypted match key: {exc}") from None
        else:
            raise InputError(f"report {index}: match key must be an EncryptedMatchKey or bytes")
        if emk.suite is not self.network.suite:
            raise InputError(
                f"report {index}: match key uses {emk.suite.label}, the network {self.network.suite.label}"
            )
        return emk

    def _flush(self) -> None:
        if self._pending:
            timestamp, is_trigger, breakdown_key, trigger_value, constraint_id = zip(
                *self._pending, strict=True
            )
            self._blocks.append(
                Events.from_columns(
                    timestamp=np.array(timestamp, dtype=np.uint64),
                    match_key=np.zeros(len(timestamp), dtype=np.uint64),
                    is_trigger=np.array(is_trigger, dtype=bool),
                    breakdown_key=np.array(breakdown_key, dtype=np.uint64),
                    trigger_value=np.array(trigger_value, dtype=np.uint64),
                    constraint_id=np.array(constraint_id, dtype=np.uint64),
                )
            )
            self._pending.clear()


def simulate_user_agents(
    events: Events,
    network: Network,
    binding: Binding,
    epochs: np.ndarray | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[EncryptedMatchKey]:
    """Each event's encrypted match key, from one user agent per distinct ``events.match_key``.

    Every simulated user agent had its match key set by
    ``binding.match_key_provider`` (which must be non-empty) before epoch 0
    and answers for ``binding.report_collector`` on each event's own site
    (``binding.site`` for events without one), its clock in the event's
    epoch (``epochs[r]``; default ``binding.epoch``); repeated events of a
    user on one site and epoch get the user agent's cached ciphertexts.
    Costs three HPKE seals per distinct (user, site, epoch) (about 2,000 per
    second). ``on_progress(n)`` hears every n more users done (every 250 or so).
    """
    if not binding.match_key_provider:
        raise InputError("simulating user agents needs a match-key provider to set the events' match keys")
    n = len(events)
    epoch = np.full(n, binding.epoch, dtype=np.int64) if epochs is None else np.asarray(epochs, np.int64)
    if epoch.shape != (n,):
        raise InputError(f"epochs must have one epoch per event ({n})")
    sites, site_index = np.unique(np.where(events.site == "", binding.site, events.site), return_inverse=True)
    users, user = np.unique(events.match_key, return_inverse=True)
    combos = np.stack([user.ravel(), site_index.ravel(), epoch])
    distinct, inverse = np.unique(combos, axis=1, return_inverse=True)
    now = [0.0]  # every simulated user agent's clock
    agents: dict[int, UserAgent] = {}
    made = []
    for u, s, e in distinct.T.tolist():
        if u not in agents:
            agents[u] = UserAgent.provisioned(
                network, binding.match_key_provider, int(users[u]), clock=lambda: now[0]
            )
            if on_progress and len(agents) % _PROGRESS_EVERY == 0:
                on_progress(_PROGRESS_EVERY)
        now[0] = network.epochs.start(e)
        made.append(
            agents[u].get_encrypted_match_key(
                binding.report_collector, str(sites[s]), match_key_provider=binding.match_key_provider
            )
        )
    if on_progress and len(agents) % _PROGRESS_EVERY:
        on_progress(len(agents) % _PROGRESS_EVERY)
    return [made[k] for k in inverse.ravel().tolist()]
