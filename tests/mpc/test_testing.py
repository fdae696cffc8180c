"""The three-party test world: running, opening, and the docstring cost check."""

import numpy as np
import pytest

from ipa.mpc.multiply import multiply
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.testing import Cost, check_cost, documented_cost, measured_cost, opened, per_party, run


def test_per_party_regroups_shares_by_party():
    assert per_party(["a0", "a1", "a2"], ["b0", "b1", "b2"]) == [("a0", "b0"), ("a1", "b1"), ("a2", "b2")]


def test_run_and_opened_give_the_plaintext_result():
    x = np.arange(10, dtype=np.uint64)
    assert opened(run(multiply, share_arithmetic(x), share_arithmetic(x))).tolist() == (x * x).tolist()
    pair = run(lambda ctx, a: (a, a), share_boolean(x, 4))
    assert [c.tolist() for c in opened(pair)] == [x.tolist(), x.tolist()]


def sketch(ctx, x):
    """A sketch for the parser.

    Cost: ``2*log2(K) + 1`` rounds,
    ``(2, K, nbytes(12))`` bytes per row.
    """


def bounded(ctx, x):
    """Cost: at most ``sum(i for i in range(w))`` rounds."""


def undocumented(ctx, x):
    """Costs nothing worth mentioning."""


def test_documented_cost_reads_the_docstring_with_parameters():
    assert documented_cost(sketch, word_bytes=2, K=8) == Cost(7, (1.0, 4.0, 1.0))
    assert documented_cost(bounded, w=4) == Cost(6, None, at_most=True)
    with pytest.raises(ValueError, match="undocumented's docstring states no 'Cost:"):
        documented_cost(undocumented)


def test_check_cost_fails_naming_both_figures_when_they_differ():
    x = share_arithmetic(np.arange(8, dtype=np.uint64))
    result = run(multiply, x, x)
    assert measured_cost(result, 8) == Cost(1, (1.0, 1.0, 1.0))
    assert check_cost(multiply, result, 8) == Cost(1, (1.0, 1.0, 1.0))
    with pytest.raises(
        AssertionError,
        match=r"docstring says 1 rounds, \(1, 1, 1\) words per row, measured 1 rounds, \(2, 2, 2\)",
    ):
        check_cost(multiply, result, 4)
    assert check_cost(bounded, result, 8, w=2).rounds == 1
    with pytest.raises(AssertionError, match="at most 0 rounds"):
        check_cost(bounded, result, 8, w=1)
