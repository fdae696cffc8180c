"""Durable result shares: round trip, file modes, atomic replacement, pruning."""

import numpy as np
import pytest

from ipa.errors import IpaError
from ipa.mpc.replicated import AShares
from ipa_helper.results import ResultStore


def test_a_share_round_trips_and_is_readable_only_by_the_helper(tmp_path):
    store = ResultStore(tmp_path / "results")
    share = AShares(np.array([1, 2**64 - 1, 0], np.uint64), np.array([5, 6, 7], np.uint64))
    store.put("ab12", share)
    back = store.get("ab12")
    assert back.left.tolist() == share.left.tolist() and back.right.tolist() == share.right.tolist()
    assert (tmp_path / "results").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "results" / "ab12.share").stat().st_mode & 0o777 == 0o600
    assert list((tmp_path / "results").iterdir()) == [tmp_path / "results" / "ab12.share"]


def test_an_empty_result_and_odd_query_ids_are_stored(tmp_path):
    store = ResultStore(tmp_path)
    store.put("../../etc/passwd", AShares(np.zeros(0, np.uint64), np.zeros(0, np.uint64)))
    assert len(store.get("../../etc/passwd").left) == 0
    assert all(p.parent == tmp_path for p in tmp_path.iterdir())


def test_missing_and_damaged_shares_are_clear_errors(tmp_path):
    store = ResultStore(tmp_path)
    with pytest.raises(IpaError, match="no stored result share"):
        store.get("cd")
    store.put("cd", AShares(np.ones(2, np.uint64), np.ones(2, np.uint64)))
    (tmp_path / "cd.share").write_bytes((tmp_path / "cd.share").read_bytes()[:-3])
    with pytest.raises(IpaError, match="damaged"):
        store.get("cd")


def test_keep_only_deletes_the_rest(tmp_path):
    store = ResultStore(tmp_path)
    for query_id in ("a1", "b2", "c3"):
        store.put(query_id, AShares(np.ones(1, np.uint64), np.ones(1, np.uint64)))
    (tmp_path / "d4.tmp").write_bytes(b"half written")
    store.keep_only({"b2"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b2.share"]
