"""DP noise added in shares, so no party ever sees an un-noised aggregate.

Each helper samples its own noise vector (``sample(B)``, e.g. OpenDP's
discrete Gaussian at the calibrated per-helper scale) and secret-shares it
(:func:`ipa.mpc.input.input_from_each`); the released sums carry all three
vectors. A helper knows only its own noise, so even one corrupt helper faces
the other two helpers' noise. Negative noise is two's complement in Z_2^64:
the collector reads the released words as signed 64-bit integers.

Cost: 1 round, B words per party.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ipa.dp.accounting import noise_scale
from ipa.dp.sampler import sample_noise
from ipa.mpc.context import Context, NoiseHook
from ipa.mpc.input import input_from_each
from ipa.mpc.replicated import AShares

__all__ = ["calibrated_noise", "noise_in_shares"]


def noise_in_shares(sample: Callable[[int], np.ndarray]) -> NoiseHook:
    """The noise hook that adds every helper's own ``sample(B)`` (signed integers) to the sums."""

    def add_noise(ctx: Context, sums: AShares) -> AShares:
        own = np.asarray(sample(len(sums)), dtype=np.int64).astype(np.uint64)
        parts = input_from_each(ctx, own)
        return sums + parts[0] + parts[1] + parts[2]

    return add_noise


def calibrated_noise(epsilon: float, delta: float, cap: int) -> NoiseHook:
    """The noise hook of a query with budget (ε, δ) and per-user cap: each helper's own
    discrete Gaussian at the scale :func:`~ipa.dp.accounting.noise_scale` gives (the
    noise of the ρ the ledger charges for (ε, δ); within 10⁻⁹ of ``calibrate``'s).
    """
    scale = noise_scale(epsilon, delta, cap)
    return noise_in_shares(lambda size: sample_noise(scale, size))



