"""Every MPC protocol costs what its docstring says: rounds (latency) and words per row, per helper."""

import numpy as np
import pytest

from ipa.mpc.adder import add, carry_out, carry_save, top_bit
from ipa.mpc.compare import equal, less_than
from ipa.mpc.convert import arith_to_bool, bit_to_arith, bool_to_arith, sign_bit
from ipa.mpc.input import input_from_each
from ipa.mpc.multiply import and_, multiply
from ipa.mpc.one_hot import one_hot
from ipa.mpc.permute import move_rows
from ipa.mpc.reveal import reveal
from ipa.mpc.ring import bool_dtype
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.shuffle import shuffle
from ipa.mpc.sort import sort
from ipa.mpc.testing import check_cost, run
from ipa.mpc.verify import check_consistent, verified_reveal

N = 50
RNG = np.random.default_rng(7)


def arith(n: int = N, dtype=np.uint64):
    return share_arithmetic(RNG.integers(0, 2**63, n, dtype=np.uint64), dtype)


def bits(width: int, n: int = N):
    return share_boolean(RNG.integers(0, 2 ** min(width, 63), n, dtype=np.uint64), width)


def test_one_round_protocols():
    check_cost(multiply, run(multiply, arith(), arith()), N)
    check_cost(reveal, run(reveal, arith()), N)
    check_cost(input_from_each, run(input_from_each, [np.arange(N, dtype=np.uint64)] * 3), N)
    for width in (1, 8, 64):
        word = bool_dtype(width).itemsize
        check_cost(and_, run(and_, bits(width), bits(width)), N, word)
        check_cost(carry_save, run(carry_save, bits(width), bits(width), bits(width)), N, word)


@pytest.mark.parametrize("w", [1, 2, 3, 4, 8, 16, 33, 63, 64])
def test_carry_out_and_top_bit(w):
    word = bool_dtype(w).itemsize
    check_cost(carry_out, run(carry_out, bits(w), bits(w)), N, word, w=w)
    if w >= 2:
        check_cost(top_bit, run(top_bit, bits(w), bits(w)), N, word, w=w)


@pytest.mark.parametrize("w", [1, 2, 3, 8, 16, 33, 64])
def test_adder_and_comparisons(w):
    word = bool_dtype(w).itemsize
    check_cost(add, run(add, bits(w), bits(w)), N, word, w=w)
    check_cost(less_than, run(less_than, bits(w), bits(w)), N, word, w=w)
    check_cost(equal, run(equal, bits(w), bits(w)), N, 1, w=w)


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_conversions(dtype):
    k, word = np.dtype(dtype).itemsize * 8, np.dtype(dtype).itemsize
    check_cost(bit_to_arith, run(lambda ctx, b: bit_to_arith(ctx, b, dtype), bits(1)), N, word)
    check_cost(arith_to_bool, run(arith_to_bool, arith(dtype=dtype)), N, word, k=k)
    check_cost(sign_bit, run(sign_bit, arith(dtype=dtype)), N, word, k=k)
    check_cost(bool_to_arith, run(lambda ctx, b: bool_to_arith(ctx, b, dtype), bits(16)), N, word, k=k)


@pytest.mark.parametrize("d", [1, 2, 3, 4, 8])
def test_one_hot(d):
    digits = share_arithmetic(RNG.integers(0, 2, (d, N), dtype=np.uint64))
    check_cost(one_hot, run(one_hot, digits), N, d=d)


@pytest.mark.parametrize("c", [1, 3])
def test_shuffle_and_move_rows(c):
    columns = [arith() for _ in range(c)]
    check_cost(shuffle, run(lambda ctx, *cols: shuffle(ctx, cols), *columns), N, c=c)
    dest = share_arithmetic(RNG.permutation(N).astype(np.uint64))
    check_cost(move_rows, run(lambda ctx, t, *cols: move_rows(ctx, t, cols), dest, *columns), N, c=c)


@pytest.mark.parametrize(("w", "d"), [(1, 1), (6, 3), (8, 3), (7, 2), (40, 3), (12, 8)])
def test_sort_rounds(w, d):
    result = run(lambda ctx, k, p: sort(ctx, k, [p], digit_bits=d), bits(w), arith())
    check_cost(sort, result, N, w=w, d=d)


@pytest.mark.parametrize(("dtype", "width"), [(np.uint32, 8), (np.uint64, 64)])
def test_verification(dtype, width):
    b = np.dtype(dtype).itemsize
    check_cost(verified_reveal, run(verified_reveal, arith(dtype=dtype)), N, b, n=N, b=b)
    check_cost(verified_reveal, run(verified_reveal, bits(width)), N, width // 8, n=N, b=width // 8)
    columns = [arith(dtype=dtype), bits(width), arith()]
    check_cost(check_consistent, run(check_consistent, *columns), N, b, n=N)
