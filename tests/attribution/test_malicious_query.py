"""The whole query in malicious mode: equal to the reference, and aborted by any one-word tamper.

The tamper sweep runs a small query (32 events) once honestly in malicious
mode, lists every (helper, step) at which a helper sends a message (as ``ipa
simulate --security malicious --list-steps`` prints them), and runs the
query again with that helper adding 1 to the first word of its first
message there: every run must abort with MaliciousBehaviourError before any
result share is returned, except at the ``input`` steps (a helper's own
noise share, ``docs/malicious.md``). ``make test`` runs a seeded sample of
``SAMPLE`` steps; ``IPA_FULL_TAMPER_SWEEP=1`` runs every listed step::

    IPA_FULL_TAMPER_SWEEP=1 .venv/bin/python -m pytest tests/attribution/test_malicious_query.py -k sweep
"""

import os
import random

import numpy as np
import pytest
from hypothesis import given, settings
from test_pipeline import queries
from three_party import mpc_query

from ipa.attribution import pipeline
from ipa.attribution.config import QueryConfig
from ipa.attribution.pipeline import run_query
from ipa.attribution.rows import share_events
from ipa.dp.release import noise_in_shares
from ipa.errors import MaliciousBehaviourError
from ipa.mpc.memory import Tamper, run_three
from ipa.mpc.sharing import reconstruct
from ipa.reference import attribute_query
from ipa.synthetic import generate
from ipa_client.commands.simulate import OWN_CHOICE

SWEEP_CONFIG = QueryConfig(
    num_breakdowns=4,
    cap=20,
    window=None,
    max_events_per_user=4,
    match_key_bits=6,
    timestamp_bits=8,
    breakdown_bits=4,  # wider than num_breakdowns needs: the sweep reaches in_range too
    value_bits=5,
    constraint_bits=1,
)
SAMPLE = 24
"""Steps tampered with in ``make test`` (a seeded sample); the full sweep is behind IPA_FULL_TAMPER_SWEEP."""


@settings(max_examples=12, deadline=None)
@given(queries(max_rows=16))
def test_malicious_query_equals_the_reference(query):
    ev, config = query
    got, results = mpc_query(ev, config, security="malicious")
    assert got.tolist() == attribute_query(ev, config).tolist()
    assert all(r.log2_soundness is not None and r.log2_soundness <= -40 for r in results)


def test_a_query_on_random_events_is_sound_to_2_to_the_minus_40_in_total():
    """Every batch of every checkpoint (the sort's passes, each phase's chunks) shares one budget."""
    config = QueryConfig(num_breakdowns=8, cap=50, window=3_600, max_events_per_user=16)
    data = generate(400, seed=19, num_breakdowns=config.num_breakdowns)
    got, results = mpc_query(data, config, security="malicious")
    assert got.tolist() == attribute_query(data, config).tolist()
    assert len({r.log2_soundness for r in results}) == 1  # every helper planned the same batches
    assert results[0].log2_soundness is not None and -60 < results[0].log2_soundness <= -40
    _, honest = mpc_query(data, config)
    assert honest[0].log2_soundness is None


def test_a_query_that_spills_in_every_phase_equals_the_reference(monkeypatch):
    """With a tiny chunk limit every phase verifies in many checkpoints, from inside its protocols
    (the scans, the cap) and in slices of its larger products; the sort records nothing (each of
    its passes checks its products by MACs, ``ipa.mpc.mac``)."""
    monkeypatch.setattr(pipeline, "VERIFY_CHUNK_WORDS", 5_000)
    config = QueryConfig(num_breakdowns=8, cap=50, window=3_600, max_events_per_user=16)
    data = generate(150, seed=23, num_breakdowns=config.num_breakdowns)
    shares = share_events(data, config)
    held: list[int] = []

    def query(ctx, rows):
        record = ctx.verifier.record

        def watched(product):
            record(product)
            held.append(ctx.verifier.pending_words)

        ctx.verifier.record = watched
        return run_query(ctx, rows, config)

    result = run_three(query, shares, security="malicious")
    assert reconstruct([o.sums for o in result.outputs]).tolist() == attribute_query(data, config).tolist()
    spills = {m.step.split("/")[1] for m in result.messages if "/verify_" in m.step}
    for phase in ("attribute", "cap", "release"):
        assert {f"verify_{phase}_0", f"verify_{phase}_1"} <= spills
    assert not any(s.startswith("verify_sort") for s in spills)  # the sort's products are checked by MACs
    assert held and max(held) <= 5_000  # the verifier never held more than one chunk
    assert all(o.log2_soundness is not None and o.log2_soundness <= -40 for o in result.outputs)


def _small_query() -> tuple[list, QueryConfig]:
    c = SWEEP_CONFIG
    data = generate(
        32,
        seed=5,
        num_breakdowns=c.num_breakdowns,
        num_constraint_ids=2,
        match_key_bits=c.match_key_bits,
        timestamp_bits=c.timestamp_bits,
        breakdown_bits=c.breakdown_bits,
        value_bits=c.value_bits,
        max_user_events=8,
    )
    return share_events(data, SWEEP_CONFIG), data


def _noise(ctx, sums):
    """Small fixed noise shares: the ``root/noise`` messages exist (as in a real query)."""
    return noise_in_shares(lambda size: np.arange(size) - 1)(ctx, sums)


def _query(ctx, rows):
    outcome = run_query(ctx, rows, SWEEP_CONFIG, _noise)
    assert ctx.verifier is not None and ctx.verifier.pending == 0  # nothing unverified is released
    return outcome


def _listed_steps() -> tuple[list[tuple[int, str]], list]:
    shares, data = _small_query()
    honest = run_three(_query, shares, security="malicious")
    sums = reconstruct([o.sums for o in honest.outputs]).astype(np.int64)
    expected = attribute_query(data, SWEEP_CONFIG).astype(np.int64) + 3 * (np.arange(4) - 1)
    assert sums.tolist() == expected.tolist()
    steps = sorted({(m.party, m.step) for m in honest.messages})
    return steps, shares


@pytest.fixture(scope="module")
def listed():
    return _listed_steps()


def _checked(steps: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return [(party, step) for party, step in steps if step not in OWN_CHOICE]


def test_the_listed_steps_cover_every_phase_and_checkpoint(listed):
    steps, _ = listed
    prefixes = {step.split("/")[1] for _, step in steps}
    assert {"sort", "last_touch", "cap", "aggregate", "noise", "verify_release_0"} <= prefixes
    assert {party for party, _ in steps} == {0, 1, 2}
    assert {s for _, s in steps if s in OWN_CHOICE} == {"root/noise"}


def _sample(steps: list[tuple[int, str]]) -> list[tuple[int, str]]:
    if os.environ.get("IPA_FULL_TAMPER_SWEEP"):
        return steps
    return random.Random(19).sample(steps, min(SAMPLE, len(steps)))


def test_tamper_sweep_aborts_at_every_checked_step(listed):
    steps, shares = listed
    missed = []
    for party, step in _sample(_checked(steps)):
        try:
            run_three(_query, shares, security="malicious", tamper=Tamper(party, step))
        except MaliciousBehaviourError:
            continue
        missed.append(f"H{party + 1} {step}")
    assert not missed, f"tampering went unnoticed at: {missed}"
