"""Report formats end to end: user agents and a report collector make uploads, helpers decode them.

Round trips, the whole query on decoded uploads, one precise error for every
tamper, the drop policy, and a fuzzed decoder that raises nothing but
InvalidReportError.
"""

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import run_query
from ipa.crypto.binding import Binding, Purpose, info, tag
from ipa.crypto.hpke import Suite, open_sealed
from ipa.crypto.keys import KeyRegistry
from ipa.errors import InvalidReportError, InvalidReportReason
from ipa.events import Events
from ipa.mpc.collective import Blocks, MemoryCollectives, slices
from ipa.mpc.memory import run_three
from ipa.mpc.prss import PRSS
from ipa.mpc.sharing import reconstruct
from ipa.network import Network
from ipa.reference import attribute
from ipa.reports.batch import encode_batch
from ipa.reports.decode import (
    InvalidReportPolicy,
    decode_batch,
    decode_part,
    exchange_duplicates,
    raise_first_invalid,
    read_head,
)
from ipa.reports.layout import FIELD_RECORD, FORMAT_VERSION
from ipa.reports.match_key import EncryptedMatchKey, encrypt_match_key
from ipa.synthetic import generate
from ipa_client.collector import ReportCollector, simulate_user_agents
from ipa_client.user_agent import UserAgent

R = InvalidReportReason
CONFIG = QueryConfig(num_breakdowns=8, cap=200, window=7 * 86_400)
QUERY = Binding("shop.example", "collector.example", 20, "provider.example")
SEALED = Suite.X25519.sealed_length(16)  # 64
HEADER = 42 + SEALED + 8 + 1 + len(QUERY.site)  # header, sealed batch key, query tail, one-site table
RECORD = 29 + SEALED  # one match-key record


@pytest.fixture(scope="module")
def registries():
    return [KeyRegistry.generate(h) for h in range(3)]


@pytest.fixture(scope="module")
def network(registries):
    return Network.from_registries(registries)


def small_events(n):
    """n events with increasing timestamps (so the presort keeps their order), alternating types."""
    return Events.from_columns(
        timestamp=np.arange(100, 100 + n),
        match_key=np.arange(n) % 3,
        is_trigger=np.arange(n) % 2,
        breakdown_key=np.arange(n) % 5,
        trigger_value=10 * np.arange(n),
        constraint_id=np.zeros(n, dtype=np.int64),
    )


def uploads(network, match_keys, query=QUERY, chunk_rows=4, events=None):
    collector = ReportCollector(network, query, CONFIG)
    collector.add_events(small_events(len(match_keys)) if events is None else events, match_keys)
    return collector.uploads(chunk_rows=chunk_rows)


def emk(network, key=5, **binding):
    return encrypt_match_key(key, network.public_keys, Binding(**(vars(QUERY) | binding)))


def refused(data, registry, query=QUERY, **kwargs):
    with pytest.raises(InvalidReportError) as caught:
        decode_batch(data, registry, query, CONFIG, **kwargs)
    return caught.value


def flip(data, position, bit=0x01):
    out = bytearray(data)
    out[position] ^= bit
    return bytes(out)


# ------------------------------------------------------------- round trips


def test_match_key_parts_are_replicated_shares(network, registries):
    key = 0x0123_4567_89AB_CDEF
    encrypted = encrypt_match_key(key, network.public_keys, QUERY)
    pairs = []
    for h, part in enumerate(encrypted.parts):
        bound = info(Purpose.MATCH_KEY, FORMAT_VERSION, Suite.X25519, part.key_id, h, QUERY)
        plain = open_sealed(registries[h].private_key(part.key_id), part.sealed, bound)
        pairs.append(np.frombuffer(plain, dtype="<u8").tolist())
    for h in range(3):
        assert pairs[h][1] == pairs[(h + 1) % 3][0]  # helper h's right is helper h+1's left
    assert pairs[0][0] ^ pairs[1][0] ^ pairs[2][0] == key
    again = encrypt_match_key(key, network.public_keys, QUERY)
    assert again.parts[0].sealed != encrypted.parts[0].sealed  # fresh shares, fresh encryption


def test_encrypted_match_key_bytes_round_trip(network):
    encrypted = emk(network, site="ünïcode.example", match_key_provider="")
    data = encrypted.to_bytes()
    assert EncryptedMatchKey.from_bytes(data) == encrypted
    assert len(data) == 4 + 3 + len("ünïcode.example".encode()) + len("collector.example") + 3 * (2 + SEALED)
    for cut in (0, 3, 10, len(data) - 1):
        assert refused_emk(data[:cut]) is R.TRUNCATED
    assert refused_emk(data + b"\0") is R.CORRUPT
    assert refused_emk(flip(data, 0)) is R.CORRUPT


def refused_emk(data):
    with pytest.raises(InvalidReportError) as caught:
        EncryptedMatchKey.from_bytes(data)
    return caught.value.reason


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_encrypted_match_key_parser_raises_only_invalid_report_error(data):
    try:
        parsed = EncryptedMatchKey.from_bytes(data)
    except InvalidReportError as exc:
        assert isinstance(exc.reason, InvalidReportReason)
    else:
        assert parsed.to_bytes() == data


def test_end_to_end_query_on_decoded_uploads_equals_the_reference(network, registries):
    events = generate(400, seed=11, num_breakdowns=CONFIG.num_breakdowns)
    collector = ReportCollector(network, QUERY, CONFIG)
    collector.add_events(events, simulate_user_agents(events, network, QUERY))
    batches = collector.uploads(chunk_rows=64)
    decoded = [decode_batch(batches[h], registries[h], QUERY, CONFIG) for h in range(3)]
    users = len(np.unique(events.match_key))
    assert all(d.distinct_match_keys == users for d in decoded)  # reused ciphertexts opened once
    assert all(d.valid.all() and d.rejected() == {} for d in decoded)
    rows = [d.rows for d in decoded]
    order = np.lexsort((events.is_trigger, events.timestamp))
    assert (reconstruct([r.timestamp for r in rows]) == events.timestamp[order]).all()  # presorted
    assert (reconstruct([r.match_key for r in rows]) == events.match_key[order]).all()
    result = run_three(lambda ctx, r: run_query(ctx, r, CONFIG), rows)
    sums = reconstruct([o.sums for o in result.outputs])
    expected = attribute(
        events,
        num_breakdowns=CONFIG.num_breakdowns,
        cap=CONFIG.cap,
        window=CONFIG.window,
        max_events_per_user=64,
    )
    assert (sums == expected).all()


def test_empty_and_single_report_batches(network, registries):
    empty = uploads(network, [])
    decoded = decode_batch(empty[0], registries[0], QUERY, CONFIG)
    assert len(decoded.rows) == 0 and decoded.rejected() == {}
    one = uploads(network, [emk(network)])
    assert [len(decode_batch(one[h], registries[h], QUERY, CONFIG).rows) for h in range(3)] == [1, 1, 1]


def test_batch_layout_sizes(network):
    batches = uploads(network, [emk(network)] * 10, chunk_rows=4)  # chunks of 4, 4, 2 reports
    assert {len(b) for b in batches} == {HEADER + 10 * (RECORD + FIELD_RECORD.itemsize) + 3 * 16}
    assert RECORD == 93 and FIELD_RECORD.itemsize == 66


def test_key_rotation_keeps_reports_made_under_the_previous_key(registries):
    old = Network.from_registries(registries)
    rotated = [r.rotate() for r in registries]
    new = Network.from_registries(rotated)
    before, after = emk(old, key=1), emk(new, key=2)
    assert before.parts[0].key_id == 1 and after.parts[0].key_id == 2
    batches = uploads(new, [before, after])
    for h in range(3):
        assert decode_batch(batches[h], rotated[h], QUERY, CONFIG).valid.all()
    forgotten = [r.rotate(keep=0) for r in rotated]
    error = refused(uploads(Network.from_registries(forgotten), [before])[0], forgotten[0])
    assert (error.reason, error.index) == (R.UNKNOWN_KEY_ID, 0)


@pytest.mark.skipif(not Suite.MLKEM768_X25519.supported, reason="no ML-KEM in this cryptography build")
def test_post_quantum_suite_round_trip():
    registries = [KeyRegistry.generate(h, Suite.MLKEM768_X25519) for h in range(3)]
    network = Network.from_registries(registries)
    batches = uploads(network, [emk(network, key=9), emk(network, key=9)])
    decoded = [decode_batch(batches[h], registries[h], QUERY, CONFIG) for h in range(3)]
    assert reconstruct([d.rows.match_key for d in decoded]).tolist() == [9, 9]
    sealed = Suite.MLKEM768_X25519.sealed_length(16)
    assert sealed == 1120 + 32
    error = refused(flip(batches[0], HEADER - SEALED + sealed + 29 + 5), registries[0])  # report 0's enc
    assert (error.reason, error.index) == (R.DECRYPTION_FAILED, 0)


# ----------------------------------------------------------------- tampers


def record_offset(report, chunk_rows=4):
    """Byte offset of a report's match-key record in a batch (X25519)."""
    chunk, row = divmod(report, chunk_rows)
    return HEADER + chunk * (chunk_rows * (RECORD + FIELD_RECORD.itemsize) + 16) + row * RECORD


@pytest.mark.parametrize(
    ("field_offset", "reason"),
    [
        (0, R.CORRUPT),  # format version
        (1, R.WRONG_HELPER),
        (2, R.UNKNOWN_KEY_ID),  # key id 1 -> 0
        (3, R.WRONG_EPOCH),  # epoch 20 -> 21
        (5, R.WRONG_SITE),
        (13, R.WRONG_REPORT_COLLECTOR),
        (21, R.WRONG_MATCH_KEY_PROVIDER),
        (29, R.DECRYPTION_FAILED),  # first byte of the encapsulated key
        (29 + 31, R.DECRYPTION_FAILED),  # last byte of the encapsulated key
        (29 + 32, R.DECRYPTION_FAILED),  # the ciphertext
        (29 + SEALED - 1, R.DECRYPTION_FAILED),  # the tag
    ],
)
def test_each_tampered_report_field_has_its_own_error(network, registries, field_offset, reason):
    batches = uploads(network, [emk(network, key=k) for k in range(6)])
    tampered = flip(batches[0], record_offset(5) + field_offset)
    error = refused(tampered, registries[0])
    assert (error.reason, error.index) == (reason, 5)
    assert "report 5" in str(error)


@pytest.mark.parametrize(
    ("position", "reason"),
    [
        (0, R.CORRUPT),  # magic
        (4, R.CORRUPT),  # format version
        (5, R.CORRUPT),  # suite
        (6, R.WRONG_HELPER),
        (7, R.UNKNOWN_KEY_ID),  # batch key id
        (8, R.WRONG_EPOCH),
        (10, R.WRONG_SITE),
        (18, R.WRONG_REPORT_COLLECTOR),
        (26, R.WRONG_MATCH_KEY_PROVIDER),
        (34, R.TRUNCATED),  # n: 6 -> 7
        (38, R.DECRYPTION_FAILED),  # reports per chunk: 4 -> 5, same length; the header is AAD
        (42, R.DECRYPTION_FAILED),  # the sealed batch key's enc
        (HEADER - 1, R.DECRYPTION_FAILED),  # its tag
    ],
)
def test_each_tampered_batch_header_field_has_its_own_error(network, registries, position, reason):
    batches = uploads(network, [emk(network, key=k) for k in range(6)])
    error = refused(flip(batches[0], position), registries[0])
    assert error.reason is reason


def test_tampered_field_chunk_fails_that_chunk(network, registries):
    batches = uploads(network, [emk(network, key=k) for k in range(6)])
    error = refused(flip(batches[0], record_offset(4) + 2 * RECORD + 3), registries[0])  # chunk 1's fields
    assert (error.reason, error.index) == (R.DECRYPTION_FAILED, 4)
    # Chunks are bound to their position: swapping two equal-sized chunks fails too.
    error = refused(flip(batches[0], len(batches[0]) - 1), registries[0])
    assert (error.reason, error.index) == (R.DECRYPTION_FAILED, 4)


def test_truncated_and_overlong_batches(network, registries):
    batch = uploads(network, [emk(network, key=k) for k in range(6)])[0]
    cuts = [(0, None), (20, None), (HEADER - 15, None), (HEADER - 1, None), (HEADER + 10, 0)]
    cuts.append((len(batch) - 1, 4))
    for cut, index in cuts:
        error = refused(batch[:cut], registries[0])
        assert (error.reason, error.index) == (R.TRUNCATED, index)
    assert refused(batch + b"\0", registries[0]).reason is R.CORRUPT
    assert refused(b"not a batch at all", registries[0]).reason is R.CORRUPT


def test_parts_swapped_between_helpers(network, registries):
    batches = uploads(network, [emk(network, key=k) for k in range(6)])
    assert refused(batches[0], registries[1]).reason is R.WRONG_HELPER  # H1's upload sent to H2
    mixed = bytearray(batches[0])
    start = record_offset(2)
    mixed[start : start + RECORD] = batches[1][start : start + RECORD]  # report 2's part for H2
    error = refused(bytes(mixed), registries[0])
    assert (error.reason, error.index) == (R.WRONG_HELPER, 2)
    mixed[start + 1] = 0  # and claiming to be H1's does not help: it is sealed to H2
    error = refused(bytes(mixed), registries[0])
    assert (error.reason, error.index) == (R.DECRYPTION_FAILED, 2)


def test_reports_replayed_into_another_query(network, registries):
    batches = uploads(network, [emk(network, key=k) for k in range(3)])
    other_site = Binding("elsewhere.example", QUERY.report_collector, QUERY.epoch, QUERY.match_key_provider)
    assert refused(batches[0], registries[0], other_site).reason is R.WRONG_SITE
    next_epoch = Binding(QUERY.site, QUERY.report_collector, QUERY.epoch + 1, QUERY.match_key_provider)
    assert refused(batches[0], registries[0], next_epoch).reason is R.EXPIRED_EPOCH
    assert refused(batches[0], registries[0], next_epoch, oldest_epoch=QUERY.epoch).reason is R.WRONG_EPOCH

    # Match keys made for another epoch, collector or provider, in this query's batch.
    cases = [
        ({"epoch": QUERY.epoch + 1}, R.WRONG_EPOCH),
        ({"epoch": QUERY.epoch - 1}, R.EXPIRED_EPOCH),  # older than the oldest accepted (default: this one)
        ({"report_collector": "rival.example"}, R.WRONG_REPORT_COLLECTOR),
        ({"match_key_provider": "other-provider.example"}, R.WRONG_MATCH_KEY_PROVIDER),
    ]
    for change, reason in cases:
        batch = uploads(network, [emk(network), emk(network, **change)])[0]
        error = refused(batch, registries[0])
        assert (error.reason, error.index) == (reason, 1)
    old = uploads(network, [emk(network, epoch=QUERY.epoch - 5)])[0]
    assert refused(old, registries[0], oldest_epoch=QUERY.epoch - 2).reason is R.EXPIRED_EPOCH


def test_reports_from_many_sites_and_epochs_are_opened_with_their_own_binding(network, registries):
    """Each report is bound to its own site and epoch; those off the querying site are marked."""
    made = [emk(network, key=1), emk(network, key=2, site="news.example"), emk(network, key=3, epoch=21)]
    collector = ReportCollector(network, QUERY, CONFIG, last_epoch=21)
    collector.add_events(small_events(3), made)
    batches = collector.uploads()
    decoded = [decode_batch(batches[h], registries[h], QUERY, CONFIG, last_epoch=21) for h in range(3)]
    assert reconstruct([d.rows.match_key for d in decoded]).tolist() == [1, 2, 3]
    assert [d.rows.off_site.tolist() for d in decoded] == [[False, True, False]] * 3
    # The query's epochs are part of the batch: a helper told a shorter span refuses it.
    assert refused(batches[0], registries[0]).reason is R.WRONG_EPOCH
    # A report from an epoch after the span is refused, one of a site the table does not name too.
    late = ReportCollector(network, QUERY, CONFIG, last_epoch=21)
    late.add_events(small_events(2), [emk(network, key=1), emk(network, key=2, epoch=22)])
    error = refused(late.uploads()[0], registries[0], last_epoch=21)
    assert (error.reason, error.index) == (R.WRONG_EPOCH, 1)


def test_more_than_256_site_and_epoch_contexts_open_in_several_calls(network, registries):
    """300 reports, each from its own epoch (300 contexts: a helper opens them 256 at a time), the
    last one corrupt so that the opener gets a subset of the rows; a consumed buffer decodes alike."""
    made = [emk(network, key=k, epoch=QUERY.epoch + k) for k in range(300)]
    collector = ReportCollector(network, QUERY, CONFIG, last_epoch=QUERY.epoch + 299)
    collector.add_events(small_events(300), made)
    batches = collector.uploads(chunk_rows=64)
    last = QUERY.epoch + 299
    decoded = [decode_batch(batches[h], registries[h], QUERY, CONFIG, last_epoch=last) for h in range(3)]
    assert reconstruct([d.rows.match_key for d in decoded]).tolist() == list(range(300))
    buffer = bytearray(flip(batches[0], record_offset(299, chunk_rows=64)))  # its version: not opened
    kept = decode_batch(
        buffer, registries[0], QUERY, CONFIG, last_epoch=last, policy=InvalidReportPolicy.DROP, consume=True
    )
    assert len(buffer) == 0  # the upload's memory is freed once read
    assert kept.rejected() == {"CORRUPT": 1}
    assert kept.distinct_match_keys == 299
    mine = decoded[0].rows.match_key
    assert (kept.rows.match_key.left[:299] == mine.left[:299]).all()
    assert (kept.rows.match_key.right[:299] == mine.right[:299]).all()


def test_a_forged_clear_header_does_not_rebind_a_match_key(network, registries):
    """Rewriting the clear site tag of a match key made elsewhere fails decryption: info binds it."""
    elsewhere = emk(network, site="elsewhere.example")
    batch = bytearray(uploads(network, [emk(network), elsewhere])[0])
    at = record_offset(1) + 1 + len("elsewhere.example")  # the site table names both sites
    batch[at + 5 : at + 13] = tag("site", QUERY.site)
    error = refused(bytes(batch), registries[0])
    assert (error.reason, error.index) == (R.DECRYPTION_FAILED, 1)


def test_duplicates_and_out_of_range_fields(network, registries):
    a, b = emk(network, key=1), emk(network, key=2)
    fields = np.zeros(4, dtype=FIELD_RECORD)
    fields["timestamp"] = [[1, 0], [2, 0], [1, 0], [2**32, 0]]
    public = network.public_keys[0]
    batch = encode_batch(public, QUERY, [a, b, a, b], fields)
    decoded = decode_batch(batch, registries[0], QUERY, CONFIG, policy=InvalidReportPolicy.DROP)
    assert decoded.reasons.tolist() == [0, 0, R.DUPLICATE, R.OUT_OF_RANGE]
    error = refused(batch, registries[0])
    assert (error.reason, error.index) == (R.DUPLICATE, 2)
    fields["is_trigger"][1] = [2, 0]
    error = refused(encode_batch(public, QUERY, [a, b, a, b], fields), registries[0])
    assert (error.reason, error.index) == (R.OUT_OF_RANGE, 1)
    assert "is_trigger" in str(error)


def test_drop_policy_counts_and_the_helpers_agree_on_the_rows_they_keep(network, registries):
    events = generate(120, seed=4, num_breakdowns=CONFIG.num_breakdowns)
    order = np.lexsort((events.is_trigger, events.timestamp))
    events = events.take(order)  # presorted already: report r is event r
    match_keys = simulate_user_agents(events, network, QUERY)
    match_keys[3] = emk(network, epoch=QUERY.epoch + 1)  # refused by all three helpers
    batches = list(uploads(network, match_keys, chunk_rows=16, events=events))
    batches[1] = flip(batches[1], record_offset(7, 16) + 40)  # report 7: corrupt at H2 only
    decoded = [
        decode_batch(batches[h], registries[h], QUERY, CONFIG, policy=InvalidReportPolicy.DROP)
        for h in range(3)
    ]
    assert decoded[0].rejected() == {"WRONG_EPOCH": 1}
    assert decoded[1].rejected() == {"WRONG_EPOCH": 1, "DECRYPTION_FAILED": 1}
    keep = decoded[0].valid & decoded[1].valid & decoded[2].valid
    assert np.flatnonzero(~keep).tolist() == [3, 7]
    result = run_three(lambda ctx, r: run_query(ctx, r, CONFIG), [d.select(keep) for d in decoded])
    expected = attribute(
        events.take(keep), num_breakdowns=CONFIG.num_breakdowns, cap=CONFIG.cap, window=CONFIG.window
    )
    assert (reconstruct([o.sums for o in result.outputs]) == expected).all()


def _in_parts(data, registry, workers):
    """Decode ``data`` as a helper with ``workers`` workers does: worker k decodes report slice k from
    the bytes of its chunks, the duplicates found over the whole batch among the workers (threads)."""
    head = read_head(data, registry, QUERY)
    cut = slices(head.n, workers)
    group = MemoryCollectives(workers, PRSS(bytes(16), bytes(16)), timeout=30)
    out: list = [None] * workers

    def worker(k):
        first, stop = head.span(cut[k])
        part = data[head.chunk_offset(first) : head.chunk_offset(stop)]
        dups = exchange_duplicates(group.member(k), Blocks.even(head.n, workers))
        out[k] = decode_part(part, head, cut[k], registry, QUERY, CONFIG, dups)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return cut, out


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 64])
def test_decoding_in_parts_on_workers_equals_decoding_the_whole_batch(network, registries, chunk_rows):
    """Every split of a batch (W = 1-4, parts cut across chunks) drops exactly the rows that decoding
    it whole drops, duplicates of rows in other parts included, and decodes the same share columns."""
    a, b, c = emk(network, key=1), emk(network, key=2), emk(network, key=3)
    stale = emk(network, epoch=QUERY.epoch + 1)
    match_keys = [a, b, c, a, b, a, stale, c, a, b, c, a, b, c, a, b, a]
    fields = np.zeros(len(match_keys), dtype=FIELD_RECORD)
    fields["timestamp"][:, 0] = [1, 2, 3, 1, 9, 1, 4, 3, 5, 2, 7, 2**40, 9, 3, 5, 2, 1]
    batch = encode_batch(network.public_keys[1], QUERY, match_keys, fields, chunk_rows=chunk_rows)
    batch = flip(batch, record_offset(4, chunk_rows) + 40)  # report 4: its match key does not open
    whole = decode_batch(batch, registries[1], QUERY, CONFIG, policy=InvalidReportPolicy.DROP)
    assert set(whole.rejected()) == {"DUPLICATE", "WRONG_EPOCH", "OUT_OF_RANGE", "DECRYPTION_FAILED"}
    for workers in range(1, 5):
        cut, parts = _in_parts(batch, registries[1], workers)
        reasons = np.concatenate([p.reasons for p, _ in parts])
        assert reasons.tolist() == whole.reasons.tolist(), workers
        for name in ("match_key", "timestamp", "breakdown_key", "trigger_value", "is_trigger"):
            for side in ("left", "right"):
                got = np.concatenate([getattr(getattr(p.rows, name), side) for p, _ in parts])
                assert (got == getattr(getattr(whole.rows, name), side)).all()
        assert (np.concatenate([p.rows.off_site for p, _ in parts]) == whole.rows.off_site).all()
        # the first invalid report is the one decoding the whole batch refuses (policy FAIL)
        with pytest.raises(InvalidReportError) as whole_error:
            decode_batch(batch, registries[1], QUERY, CONFIG)
        errors = []
        for k, (p, details) in enumerate(parts):
            try:
                raise_first_invalid(p.reasons, details, cut[k].start)
            except InvalidReportError as exc:
                errors.append(exc)
        assert (errors[0].reason, errors[0].index) == (whole_error.value.reason, whole_error.value.index)


def test_a_chunk_that_does_not_open_fails_the_part_that_holds_it(network, registries):
    a = emk(network, key=1)
    fields = np.zeros(10, dtype=FIELD_RECORD)
    batch = encode_batch(network.public_keys[0], QUERY, [a] * 10, fields, chunk_rows=4)
    batch = flip(batch, record_offset(4, 4) + 4 * RECORD + 4)  # chunk 1 (reports 4-7): its sealed fields
    head = read_head(batch, registries[0], QUERY)
    for rows in (slice(0, 4), slice(8, 10)):
        first, stop = head.span(rows)
        part = batch[head.chunk_offset(first) : head.chunk_offset(stop)]
        assert (
            len(
                decode_part(part, head, rows, registries[0], QUERY, CONFIG, lambda r, f, v: np.zeros_like(v))[
                    0
                ].rows
            )
            > 0
        )
    with pytest.raises(InvalidReportError) as caught:
        first, stop = head.span(slice(6, 9))
        part = batch[head.chunk_offset(first) : head.chunk_offset(stop)]
        decode_part(part, head, slice(6, 9), registries[0], QUERY, CONFIG, lambda r, f, v: np.zeros_like(v))
    assert (caught.value.reason, caught.value.index) == (R.DECRYPTION_FAILED, 4)
    assert (refused(batch, registries[0]).reason, refused(batch, registries[0]).index) == (
        R.DECRYPTION_FAILED,
        4,
    )


# ------------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def valid_batch(network):
    return uploads(network, [emk(network, key=k % 3) for k in range(5)], chunk_rows=2)[0]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_decoder_raises_only_invalid_report_error(valid_batch, registries, data):
    mutation = data.draw(st.sampled_from(["flip", "cut", "insert", "random", "splice"]))
    batch = bytearray(valid_batch)
    if mutation == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            batch[data.draw(st.integers(0, len(batch) - 1))] ^= data.draw(st.integers(1, 255))
    elif mutation == "cut":
        batch = batch[: data.draw(st.integers(0, len(batch) - 1))]
    elif mutation == "insert":
        at = data.draw(st.integers(0, len(batch)))
        batch[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    elif mutation == "random":
        batch = bytearray(data.draw(st.binary(max_size=400)))
    else:  # a valid header in front of garbage
        batch = batch[:HEADER] + bytearray(data.draw(st.binary(max_size=600)))
    policy = data.draw(st.sampled_from(list(InvalidReportPolicy)))
    try:
        decoded = decode_batch(bytes(batch), registries[0], QUERY, CONFIG, policy=policy)
    except InvalidReportError as exc:
        assert isinstance(exc.reason, InvalidReportReason)
    else:
        assert len(decoded.rows) == len(decoded.reasons)


def test_user_agent_output_feeds_the_collector_as_bytes(network, registries):
    in_query_epoch = network.epochs.start(QUERY.epoch)
    agent = UserAgent.provisioned(network, "provider.example", 77, clock=lambda: in_query_epoch)
    sent = agent.get_encrypted_match_key(
        QUERY.report_collector, QUERY.site, match_key_provider="provider.example"
    ).to_bytes()
    batches = uploads(network, [sent, sent])
    decoded = [decode_batch(batches[h], registries[h], QUERY, CONFIG) for h in range(3)]
    assert reconstruct([d.rows.match_key for d in decoded]).tolist() == [77, 77]
    assert decoded[0].distinct_match_keys == 1


def test_a_trigger_value_wider_than_value_bits_is_out_of_range_at_every_helper(network, registries):
    # A trigger value is a boolean sharing, so one helper alone sees a component that is too wide:
    # a collector cannot pass a huge or "negative" value that would break the DP sensitivity bound.
    fields = np.zeros(2, dtype=FIELD_RECORD)
    fields["is_trigger"] = [[1, 0], [1, 0]]
    fields["trigger_value"] = [[5, 0], [0, 2**CONFIG.value_bits]]
    batch = encode_batch(network.public_keys[0], QUERY, [emk(network, key=1), emk(network, key=2)], fields)
    error = refused(batch, registries[0])
    assert (error.reason, error.index) == (R.OUT_OF_RANGE, 1)
    assert "trigger_value" in str(error)


@pytest.mark.parametrize(("site", "query_type"), [("news.example", "source"), ("shop.example", "trigger")])
def test_multi_site_reports_over_an_epoch_span_decode_to_the_reference(registries, site, query_type):
    """Daily epochs: the events span several; each report is sealed on its own site in its own epoch."""
    from ipa.attribution.config import QueryType
    from ipa.reference import attribute_query
    from ipa.synthetic import ADVERTISERS, PUBLISHERS

    network = Network(Network.from_registries(registries).helpers, {"epochs": {"length_seconds": 86_400}})
    events = generate(
        300, seed=8, num_breakdowns=8, publishers=PUBLISHERS, advertisers=ADVERTISERS, max_devices=2
    )
    epochs = network.epochs.epochs_of(events.timestamp)
    first, last = int(epochs.min()), int(epochs.max())
    assert last > first  # the events cross epoch boundaries
    config = QueryConfig(num_breakdowns=8, cap=200, window=86_400, query_type=QueryType(query_type))
    query = Binding(site, "collector.example", first, "provider.example")
    collector = ReportCollector(network, query, config, last_epoch=last)
    collector.add_events(events, simulate_user_agents(events, network, query, epochs))
    batches = collector.uploads()
    decoded = [decode_batch(batches[h], registries[h], query, config, last_epoch=last) for h in range(3)]
    assert decoded[0].rows.off_site.sum() == (events.site != site).sum()
    result = run_three(lambda ctx, r: run_query(ctx, r, config), [d.select() for d in decoded])
    expected = attribute_query(events, config, site)
    assert reconstruct([o.sums for o in result.outputs]).tolist() == expected.tolist()
    assert expected.sum() > 0
