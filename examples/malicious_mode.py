"""Malicious mode in the in-memory runner: verified products, a checkpoint, and a caught tamper.

    python examples/malicious_mode.py

Three helpers compute x·y and the AND of two bit columns in malicious mode
(``run_three(..., security="malicious")``): the products are the semi-honest
ones, recorded; ``checkpoint`` verifies them against bucket-checked random
triples; only then may ``reveal`` open the result. The same run with helper
H2 adding 1 to one word of its product message aborts with
MaliciousBehaviourError (``docs/malicious.md``).
"""

from __future__ import annotations

import numpy as np

from ipa.errors import MaliciousBehaviourError
from ipa.mpc.checkpoint import CHECKPOINT_STEPS, checkpoint
from ipa.mpc.context import Context
from ipa.mpc.memory import Tamper, run_three
from ipa.mpc.multiply import and_, multiply
from ipa.mpc.replicated import AShares, BShares
from ipa.mpc.reveal import reveal
from ipa.mpc.sharing import share_arithmetic, share_boolean
from ipa.mpc.step import Steps

STEPS = Steps("example", "times", "both", "open_product", "open_and", check=CHECKPOINT_STEPS)


Inputs = tuple[AShares, AShares, BShares, BShares]


def protocol(ctx: Context, shares: Inputs) -> tuple[np.ndarray, np.ndarray]:
    x, y, a, b = shares
    ctx = ctx.enter(STEPS)
    product = multiply(ctx.narrow("times"), x, y)
    both = and_(ctx.narrow("both"), a, b)
    checkpoint(ctx.narrow("check"))  # reveal would refuse before this line
    return reveal(ctx.narrow("open_product"), product), reveal(ctx.narrow("open_and"), both)


def main() -> None:
    x, y = np.array([3, 5, 2**40], np.uint64), np.array([7, 11, 2**30], np.uint64)
    a, b = np.array([1, 0, 1], np.uint8), np.array([1, 1, 0], np.uint8)
    columns = [share_arithmetic(x), share_arithmetic(y), share_boolean(a, 1), share_boolean(b, 1)]
    inputs = [tuple(c[i] for c in columns) for i in range(3)]

    result = run_three(protocol, inputs, security="malicious")
    product, both = result.outputs[0]
    print(f"x·y = {product.tolist()} (in Z_2^64), a AND b = {both.tolist()}, in {result.rounds} rounds")
    assert np.array_equal(product, x * y) and np.array_equal(both, a & b)
    print("verified and opened as expected")

    tamper = Tamper(party=1, step="root/times", kind="add")
    try:
        run_three(protocol, inputs, security="malicious", tamper=tamper)
    except MaliciousBehaviourError as error:
        print(f"H2 altered its product message: {error}")
    else:
        raise SystemExit("the tampered run was not caught")


if __name__ == "__main__":
    main()
