import numpy as np
from three_party import run

from ipa.attribution.noise import noise_in_shares
from ipa.mpc.sharing import reconstruct, share_arithmetic


def test_the_released_sums_carry_every_helpers_own_noise():
    noise = {0: np.array([1, -2, 3]), 1: np.array([-10, 0, 10]), 2: np.array([100, -100, 0])}
    sums = np.array([5, 7, 0], np.uint64)

    def protocol(ctx, shares):
        return noise_in_shares(lambda size: noise[ctx.party][:size])(ctx, shares)

    result = run(protocol, share_arithmetic(sums))
    released = reconstruct(result.outputs).view(np.int64)
    assert released.tolist() == [5 + 1 - 10 + 100, 7 - 2 + 0 - 100, 0 + 3 + 10 + 0]
