"""The noise the pipeline releases has the calibrated variance (three helpers' noise)."""

import numpy as np
from three_party_dp import run_noise

from ipa.dp import calibrate


def test_released_noise_has_three_times_the_per_helper_variance():
    calibration = calibrate(1.0, 1e-6, 10)
    released = run_noise(calibration.scale, 30_000)
    expected = 3 * calibration.scale**2
    assert abs(released.mean()) < 5 * np.sqrt(expected / 30_000)
    assert abs(released.var() / expected - 1) < 0.06
