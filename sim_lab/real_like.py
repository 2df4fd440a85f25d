"""Simulated scans of a real mixture as a real instrument measures it: the simulator held against reality.

:func:`simulate_like` measures a weighed mixture (reference CIFs and weight fractions) on the simulated
diffractometer set up as the real one: the real scan's grid and radiation, the instrument profile's widths,
asymmetry and Kβ leak, anomalous dispersion, Brindley microabsorption for grains of a given size, March-Dollase
preferred orientation of a strength drawn per phase, the real scan's background and its count level, and Poisson
noise. ``bench/analysis.py --real DIR --sim-like`` refits both with the same model and compares their Rwp: a
simulator as hard as reality leaves a misfit as large as the real scan's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pymatgen.core import Structure

from instruments.readings import Diffractogram
from sim_lab.xrd import PhaseInSample, PowderDiffractometer

__all__ = ["RealLikeSettings", "simulate_like", "simulate_real_mixture"]


@dataclass(frozen=True)
class RealLikeSettings:
    """What the simulated instrument and sample borrow from reality, and what they add.

    Attributes:
        caglioti_uvw_deg2, asymmetry, kbeta_ratio, kbeta_angstrom: the instrument profile.
        zero_shift_deg: the scan's zero shift.
        grain_size_um: grain diameter for microabsorption (None: none).
        orientation_spread: March-Dollase r is drawn per phase in [1 − spread, 1 + spread] along (0 0 1).
        particle_statistics: lognormal σ of each reflection's intensity (finite grain statistics).
    """

    caglioti_uvw_deg2: tuple[float, float, float]
    asymmetry: float
    kbeta_ratio: float
    kbeta_angstrom: float
    zero_shift_deg: float = 0.0
    grain_size_um: float | None = 2.0
    orientation_spread: float = 0.05
    particle_statistics: float = 0.2


def simulate_like(
    real: Diffractogram,
    phases: Mapping[str, tuple[Structure, float, float]],
    background_counts: NDArray[np.float64],
    settings: RealLikeSettings,
    rng: np.random.Generator,
) -> Diffractogram:
    """A simulated scan of ``phases`` (name -> structure, weight fraction, crystallite diameter in nm) on ``real``'s
    grid, radiation and count level, over ``background_counts`` (the real scan's background, counts per step)."""
    x = real.two_theta_deg
    step = float(np.mean(np.diff(x)))
    u, v, w = settings.caglioti_uvw_deg2
    instrument = PowderDiffractometer(
        wavelength_angstrom=real.wavelength_angstrom,
        wavelength_ka2_angstrom=real.wavelength_ka2_angstrom,
        ka2_ratio=real.ka2_ratio,
        two_theta_min_deg=float(x[0]),
        two_theta_max_deg=float(x[0] + step * (x.size - 1)),
        step_deg=step,
        caglioti_u_deg2=max(u, 1e-6),
        caglioti_v_deg2=v,
        caglioti_w_deg2=w,
        zero_shift_deg=settings.zero_shift_deg,
        asymmetry=settings.asymmetry,
        kbeta_angstrom=settings.kbeta_angstrom,
        kbeta_ratio=settings.kbeta_ratio,
        anomalous=True,
        grain_size_um=settings.grain_size_um,
        background_counts_per_s=tuple(np.zeros(x.size)),
        flux=1.0,
        name="sim-like-real",
        particle_statistics=settings.particle_statistics,
        particle_seed=int(rng.integers(2**31)),
    )
    sample = [
        PhaseInSample(
            name,
            structure,
            fraction,
            size_nm,
            preferred_orientation_hkl=(0, 0, 1),
            march_dollase_r=float(rng.uniform(1 - settings.orientation_spread, 1 + settings.orientation_spread)),
        )
        for name, (structure, fraction, size_nm) in phases.items()
    ]
    diffracted = instrument.expected_counts(sample, 1.0)
    target = float(np.sum(np.clip(real.counts - background_counts, 0.0, None)))
    expected = diffracted * (target / max(float(diffracted.sum()), 1e-300)) + np.clip(background_counts, 0.0, None)
    counts = rng.poisson(np.clip(expected, 0.0, None)).astype(np.float64)
    return Diffractogram(
        two_theta_deg=x,
        counts=counts,
        wavelength_angstrom=real.wavelength_angstrom,
        wavelength_ka2_angstrom=real.wavelength_ka2_angstrom,
        ka2_ratio=real.ka2_ratio,
        counting_time_s=real.counting_time_s,
        sample_id=f"simulated {real.sample_id or 'scan'}",
        metadata={"instrument": "sim-like-real"},
    )


def simulate_real_mixture(
    real: Diffractogram,
    cifs: Mapping[str, object],
    fractions: Mapping[str, float],
    fit: object,
    profile: object,
    rng: np.random.Generator,
    settings: RealLikeSettings | None = None,
) -> Diffractogram:
    """:func:`simulate_like` for a weighed mixture fitted on ``real`` (an ``analysis`` ``PhaseQuantification`` with
    one phase per CIF, in order): its crystallite sizes, zero shift and background, the instrument ``profile``'s
    widths, asymmetry and Kβ leak."""
    from pathlib import Path

    phases = {}
    for fraction, cif, phase in zip(fractions.values(), cifs.values(), fit.phases, strict=True):  # type: ignore[attr-defined]
        size = phase.crystallite_size_nm.value
        phases[Path(str(cif)).stem] = (Structure.from_file(str(cif)), fraction, size if np.isfinite(size) else 100.0)
    settings = settings or RealLikeSettings(
        profile.caglioti_uvw_deg2,  # type: ignore[attr-defined]
        profile.asymmetry,  # type: ignore[attr-defined]
        profile.kbeta_ratio,  # type: ignore[attr-defined]
        profile.kbeta_angstrom,  # type: ignore[attr-defined]
        zero_shift_deg=fit.zero_shift_deg.value,  # type: ignore[attr-defined]
    )
    return simulate_like(real, phases, fit.background, settings, rng)  # type: ignore[attr-defined]
