"""A query's parameters (``ipa.query``): canonical encoding, digest, and the wire round trip of both sides."""

import dataclasses
import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ipa.query
from ipa.attribution.config import QueryConfig, QueryType
from ipa.crypto.binding import Binding
from ipa.errors import InputError
from ipa.query import PARAMS_VERSION, QuerySpec, encode_params, params_digest
from ipa.reports.decode import InvalidReportPolicy
from ipa_client.query_client import query_params, upload_digest
from ipa_helper.params import spec_from_proto, spec_to_proto
from ipa_rpc.params import params_fields, params_message

BINDING = Binding(site="shop.example", report_collector="rc", epoch=7, match_key_provider="mkp")
CONFIG = QueryConfig(num_breakdowns=16, cap=100, window=86_400, max_events_per_user=32)
SPEC = QuerySpec(BINDING, CONFIG, 1.5, 1e-9, False, InvalidReportPolicy.DROP, 9)
QUERY_ID = "0123456789abcdef0123456789abcdef"

# The digest of SPEC under QUERY_ID, encoding version 2 (version 1 had no security field): a changed
# encoding must change the version.
VECTOR = "c7663b5c07b54fead585819bd5581924219ca6b08b6b20f1805af9f275f7f46e"

# One other value per field, each still a valid query.
CHANGED = {
    "site": "other.example",
    "epoch": 8,
    "report_collector": "rc2",
    "num_breakdowns": 15,
    "cap": 101,
    "window": 86_401,
    "max_events_per_user": 64,
    "match_key_bits": 41,
    "timestamp_bits": 31,
    "breakdown_bits": 7,
    "value_bits": 15,
    "constraint_bits": 7,
    "epsilon": 1.5000000000000002,  # the next float: the digest binds the exact value
    "delta": 0.0,
    "no_noise": True,
    "invalid_reports": "FAIL",
    "match_key_provider": "",
    "last_epoch": 10,
    "query_type": "trigger",
    "security": "malicious",
}


def test_the_encoding_is_stable():
    """A fixed test vector: the encoding of version 2 must never change silently."""
    encoded = encode_params(SPEC, QUERY_ID)
    assert encoded.startswith(b"ipa/query-params\0" + struct.pack(">H", 2) + struct.pack(">I", 32))
    assert params_digest(SPEC, QUERY_ID) == hashlib.sha256(encoded).digest()
    assert params_digest(SPEC, QUERY_ID).hex() == VECTOR


def test_every_field_and_the_query_id_change_the_digest():
    fields = SPEC.fields()
    assert list(fields) == list(CHANGED)  # every parameter is covered
    base = params_digest(SPEC, QUERY_ID)
    digests = {base}
    for name, value in CHANGED.items():
        other = QuerySpec.from_fields(fields | {name: value})
        assert other.fields()[name] == value, name
        digests.add(params_digest(other, QUERY_ID))
    assert len(digests) == len(CHANGED) + 1  # all different from the base and from each other
    assert params_digest(SPEC, QUERY_ID[:-1] + "0") != base
    no_window = dataclasses.replace(SPEC, config=dataclasses.replace(CONFIG, window=None))
    zero_window = dataclasses.replace(SPEC, config=dataclasses.replace(CONFIG, window=0))
    assert len({base, params_digest(no_window, QUERY_ID), params_digest(zero_window, QUERY_ID)}) == 3


def test_the_version_is_part_of_the_digest(monkeypatch):
    assert PARAMS_VERSION == 2
    base = params_digest(SPEC, QUERY_ID)
    monkeypatch.setattr(ipa.query, "PARAMS_VERSION", 3)
    assert encode_params(SPEC, QUERY_ID)[17:19] == b"\x00\x03"
    assert params_digest(SPEC, QUERY_ID) != base


def test_kinds_not_python_types_are_encoded():
    """ε = 1 and ε = 1.0 are the same parameter on the wire, so they have one digest."""
    one = dataclasses.replace(SPEC, epsilon=1)
    assert params_digest(one, QUERY_ID) == params_digest(dataclasses.replace(SPEC, epsilon=1.0), QUERY_ID)


def test_what_the_client_sends_is_what_the_helpers_check():
    """The client's request, the helper's parse and the leader's forwarded copy have one digest."""
    params = query_params(BINDING, CONFIG, epsilon=1.5, delta=1e-9, drop_invalid=True, last_epoch=9)
    received = spec_from_proto(params)
    assert received == SPEC
    forwarded = spec_from_proto(spec_to_proto(received))  # H1 -> H2, H3
    assert forwarded == SPEC
    assert upload_digest(params, QUERY_ID) == params_digest(forwarded, QUERY_ID) == bytes.fromhex(VECTOR)


@given(
    epsilon=st.floats(min_value=1e-6, max_value=100),
    cap=st.integers(0, 2**62 - 1),
    window=st.none() | st.integers(0, 2**32 - 1),
    drop=st.booleans(),
    query_type=st.sampled_from(list(QueryType)),
)
def test_the_wire_round_trip_keeps_every_parameter(epsilon, cap, window, drop, query_type):
    config = dataclasses.replace(CONFIG, cap=cap, window=window, query_type=query_type)
    policy = InvalidReportPolicy.DROP if drop else InvalidReportPolicy.FAIL
    spec = QuerySpec(BINDING, config, epsilon, 0.0, False, policy)
    message = params_message(spec.fields())
    assert params_fields(message) == spec.fields()
    assert spec_from_proto(message) == spec


def test_absent_fields_take_their_wire_defaults():
    message = params_message(SPEC.fields())
    message.ClearField("last_epoch")
    message.ClearField("window")
    message.query_type = ""
    message.invalid_reports = 0  # unspecified
    spec = spec_from_proto(message)
    assert spec.last_epoch == BINDING.epoch and spec.config.window is None
    assert spec.config.query_type is QueryType.SOURCE and spec.invalid_reports is InvalidReportPolicy.FAIL


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"epsilon": -1.0}, "epsilon must be a positive number"),
        ({"epsilon": float("nan")}, "epsilon must be a positive number"),
        ({"delta": 1.0}, "delta must be in"),
        ({"last_epoch": 6}, "last_epoch must be in"),
        ({"last_epoch": 7 + 16}, "at most 16 consecutive epochs"),
        ({"max_events_per_user": 6}, "power of two"),
        ({"query_type": "both"}, "query_type must be"),
    ],
)
def test_bad_parameters_are_named(change, error):
    with pytest.raises(InputError, match=error):
        QuerySpec.from_fields(SPEC.fields() | change)
