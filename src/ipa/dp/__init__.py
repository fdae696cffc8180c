"""Differential privacy for the released breakdown sums: calibration and noise.

What the package guarantees: a query releases ``B`` sums (one per breakdown
key) in which each user contributes non-negative integers adding up to at most
``cap``, so the L1 and L2 sensitivities of the ``B``-vector under adding or
removing one user are both at most ``cap``. :func:`calibrate` picks the
per-helper scale ``σ_h`` of a discrete Gaussian such that ONE helper's noise
vector ``z_i`` alone makes ``sums + z_i`` ``ρ``-zCDP and hence
``(ε, δ)``-DP (OpenDP's privacy map and its zCDP → approximate-DP
conversion); :func:`sample_noise` draws ``z_i`` with OpenDP's exact sampler
from a CSPRNG. See ``docs/dp.md`` for the math and a table of scales.

Threat model: three helpers, honest majority; at most one helper is corrupt
(semi-honest or malicious). Each helper samples its own ``z_i`` and adds it in
secret-shared form, so the released vector is ``sums + z_1 + z_2 + z_3``. A
corrupt helper knows (or zeroes) its own ``z_i`` and can subtract it; what is
left, ``sums + z_j + z_k``, is a post-processing of ``sums + z_j`` (adding the
independent ``z_k`` never hurts), so the guarantee holds as long as one honest
helper's noise is added as sampled. Two colluding helpers are out of scope
(they can reconstruct every share anyway). This is the conservative analysis:
a bound on the sum of two helpers' discrete Gaussians would allow ``σ_h`` about
``1/√2`` smaller, but we could not check that theorem's statement against the
paper's text (``docs/dp.md``).

NB: importing this package calls ``opendp.prelude.enable_features("contrib")``
(OpenDP's discrete Gaussian constructor needs it); it enables no other feature.

Modules: :mod:`ipa.dp.calibration` (scale, ``ρ``, ``ε`` and composition),
:mod:`ipa.dp.sampler` (the noise vector), :mod:`ipa.dp.accounting` (the
ledger's exact ``ρ`` units, query charges and the scale calibrated to them),
:mod:`ipa.dp.noise` (what a release states about its noise: std and 95 %
interval), :mod:`ipa.dp.release` (noise added in shares).
"""

from ipa.dp.calibration import NoiseCalibration, calibrate, compose, epsilon_of, rho_of
from ipa.dp.sampler import sample_noise

__all__ = ["NoiseCalibration", "calibrate", "compose", "epsilon_of", "rho_of", "sample_noise"]
