import numpy as np

from ipa.dp import calibrate, sample_noise
from ipa.dp.release import noise_in_shares
from ipa.mpc.memory import run_three
from ipa.mpc.sharing import reconstruct, share_arithmetic
from ipa.mpc.testing import opened, run


def run_noise(scale: float, size: int) -> np.ndarray:
    """Released values of ``size`` zero sums after every helper added its noise."""
    hook = noise_in_shares(lambda n: sample_noise(scale, n))
    return opened(run(hook, share_arithmetic(np.zeros(size, np.uint64)))).view(np.int64)


def test_the_released_sums_carry_every_helpers_own_noise():
    noise = {0: np.array([1, -2, 3]), 1: np.array([-10, 0, 10]), 2: np.array([100, -100, 0])}
    sums = np.array([5, 7, 0], np.uint64)

    def protocol(ctx, shares):
        return noise_in_shares(lambda size: noise[ctx.party][:size])(ctx, shares)

    result = run_three(protocol, share_arithmetic(sums))
    released = reconstruct(result.outputs).view(np.int64)
    assert released.tolist() == [5 + 1 - 10 + 100, 7 - 2 + 0 - 100, 0 + 3 + 10 + 0]


def test_released_noise_has_three_times_the_per_helper_variance():
    calibration = calibrate(1.0, 1e-6, 10)
    released = run_noise(calibration.scale, 30_000)
    expected = 3 * calibration.scale**2
    assert abs(released.mean()) < 5 * np.sqrt(expected / 30_000)
    assert abs(released.var() / expected - 1) < 0.06
