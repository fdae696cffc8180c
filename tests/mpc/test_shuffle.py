import numpy as np

from ipa.mpc.permute import move_rows
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.shuffle import shuffle
from ipa.mpc.testing import opened, run


def shuffled(n):
    ids = np.arange(n, dtype=np.uint64)
    tags = (ids * 7 + 3) & 0xFF
    result = run(lambda ctx, a, b: shuffle(ctx, [a, b]), share_arithmetic(ids), share_boolean(tags, 8))
    return result, *opened(result)


def test_rows_stay_together_and_nothing_is_lost():
    _, ids, tags = shuffled(1000)
    assert np.array_equal(np.sort(ids), np.arange(1000))
    assert np.array_equal(tags, (ids * 7 + 3) & 0xFF)
    assert not np.array_equal(ids, np.arange(1000))


def test_cost_two_rounds_of_three_steps_and_two_or_one_words_per_row_and_column():
    result, _, _ = shuffled(1000)
    assert result.rounds == 2  # H2's message in step 2 travels together with H1's of step 1
    assert len(result.stats[0].steps) == 3
    assert result.bytes_sent() == [2 * 1000 * (8 + 1), 1000 * (8 + 1), 1000 * (8 + 1)]


def test_fresh_seeds_give_a_different_permutation():
    _, first, _ = shuffled(200)
    _, second, _ = shuffled(200)
    assert not np.array_equal(first, second)


def test_positions_are_roughly_uniform():
    # Where row 0 lands over many shuffles of 8 rows: each position about 1/8 of the time.
    lands = [int(np.flatnonzero(shuffled(8)[1] == 0)[0]) for _ in range(240)]
    counts = np.bincount(lands, minlength=8)
    assert counts.min() > 10 and counts.max() < 55


def test_empty_and_single_row():
    assert [len(c) for c in shuffled(0)[1:]] == [0, 0]
    assert shuffled(1)[1].tolist() == [0]


def test_move_rows_puts_each_row_at_its_destination():
    dest = np.array([3, 0, 4, 1, 2], np.uint32)
    values = np.array([10, 11, 12, 13, 14], np.uint64)
    shared = share_arithmetic(dest, np.uint32), share_arithmetic(values)
    result = run(lambda ctx, d, v: move_rows(ctx, d, [v]), *shared)
    out = np.empty(5, np.uint64)
    out[dest] = values
    assert np.array_equal(opened(result)[0], out)
