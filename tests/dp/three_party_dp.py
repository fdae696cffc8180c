"""Running the noise hook of the attribution pipeline in the in-memory runner."""

import numpy as np

from ipa.dp import sample_noise
from ipa.dp.release import noise_in_shares
from ipa.mpc.memory import run_three
from ipa.mpc.sharing import reconstruct, share_arithmetic


def run_noise(scale: float, size: int) -> np.ndarray:
    """Released values of ``size`` zero sums after every helper added its noise."""
    hook = noise_in_shares(lambda n: sample_noise(scale, n))
    result = run_three(lambda ctx, sums: hook(ctx, sums), share_arithmetic(np.zeros(size, np.uint64)))
    return reconstruct(result.outputs).view(np.int64)
