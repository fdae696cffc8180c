"""The parameter digest in each helper's upload, in-process: three real helpers over in-memory peers.

A leader that forwards other parameters than the collector's (its ``_forward``
hook; ``IPA_TAMPER`` in ``ipa-helper``) is refused by the other two before
any MPC starts, everywhere refunded; so is a collector's upload whose digest
is missing or of other parameters. The same over real processes:
tests/e2e/test_malicious_inputs.py.
"""

import dataclasses

import pytest
from memory_world import Collector, fresh, memory_configs, spec, uploads

from ipa.errors import InputError, IpaError, MaliciousBehaviourError
from ipa.query import params_digest
from ipa.synthetic import generate
from ipa_helper.memory import MemoryNetwork
from ipa_helper.queries import State

EVENTS = generate(200, seed=8, num_breakdowns=4)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("digest-net")
    configs = memory_configs(directory, timeout_seconds=5)
    return configs, uploads(directory, EVENTS)


@pytest.fixture
def net(files, tmp_path):
    configs, _ = files
    world = MemoryNetwork(fresh(configs, tmp_path))
    yield world
    world.close()


def spends(net, query_id):
    """The query's ledger state at each helper, wherever it was charged (the altered site too)."""
    found = []
    for party in range(3):
        ledger = net.helper(party).ledger
        for site in ("shop.example", "evil.example"):
            found += [s.state for s in ledger.queries(site, 3) if s.query_id == query_id]
    return found


def upload_each(rc, query_id, batches, digests):
    """Each helper's upload with its own digest, in turn; the error each raised (None: accepted).

    A helper whose query a peer has failed already refuses as "ended".
    """
    errors = []
    for party in range(3):
        try:
            rc.net.helper(party).upload(query_id, rc.tokens[party], digests[party], [batches[party]])
            errors.append(None)
        except IpaError as exc:
            errors.append(exc)
    return errors


ALTERATIONS = {
    "epsilon": lambda s: dataclasses.replace(s, epsilon=2 * s.epsilon),
    "cap": lambda s: dataclasses.replace(s, config=dataclasses.replace(s.config, cap=s.config.cap + 1)),
    "window": lambda s: dataclasses.replace(s, config=dataclasses.replace(s.config, window=5)),
    "site": lambda s: dataclasses.replace(s, binding=dataclasses.replace(s.binding, site="evil.example")),
}


@pytest.mark.parametrize("field", sorted(ALTERATIONS))
def test_a_leader_forwarding_altered_parameters_is_refused_and_nothing_is_spent(net, files, field):
    _, batches = files
    net.helper(0)._forward = ALTERATIONS[field]
    rc = Collector(net)
    query_id = rc.create(spec(epsilon=1.0, no_noise=False))
    digest = rc.params(query_id)
    errors = upload_each(rc, query_id, batches, [digest] * 3)
    assert errors[0] is None  # H1's own copy is the collector's
    assert isinstance(errors[1], MaliciousBehaviourError) and errors[1].check == "query parameters"
    assert str(errors[1]) == (
        "malicious behaviour detected: query parameters check failed (the query parameters differ "
        "from the collector's: those H1 forwarded do not match the digest in the collector's upload to H2)"
    )  # the check and the helpers, never a value
    assert rc.wait_final(query_id) == [State.FAILED] * 3
    for party in range(3):  # H2 found it; H1 and H3 learnt it from H2 (H3 had not uploaded yet)
        assert "query parameters check failed" in net.helper(party).queries.get(query_id).error
    assert spends(net, query_id) == ["refunded"] * 3
    net.helper(0)._forward = lambda s: s  # an honest leader: the next query runs
    honest = rc.create(spec(epsilon=1.0, no_noise=False))
    rc.upload(honest, batches)
    assert rc.wait_final(honest) == [State.COMPLETED] * 3
    assert spends(net, honest) == ["committed"] * 3


@pytest.mark.parametrize("party", [0, 1, 2])
@pytest.mark.parametrize("kind", ["missing", "other"])
def test_an_upload_without_the_digest_or_with_another_fails_the_query_everywhere(net, files, party, kind):
    _, batches = files
    rc = Collector(net)
    query_id = rc.create(spec(epsilon=1.0, no_noise=False))
    other = params_digest(spec(epsilon=2.0, no_noise=False), query_id)
    digests = [rc.params(query_id)] * 3
    digests[party] = b"" if kind == "missing" else other
    errors = upload_each(rc, query_id, batches, digests)
    assert errors[:party] == [None] * party  # the helpers before it had started
    if kind == "missing":
        assert isinstance(errors[party], InputError)
        assert str(errors[party]) == "the upload carries no digest of the query parameters"
    else:
        assert isinstance(errors[party], MaliciousBehaviourError)
        assert "the query parameters differ from the collector's" in str(errors[party])
    assert rc.wait_final(query_id) == [State.FAILED] * 3
    assert spends(net, query_id) == ["refunded"] * 3
