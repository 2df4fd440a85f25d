"""Microabsorption: Brindley's particle absorption factors for powders of phases that absorb X-rays differently.

In a mixture of a strongly and a weakly absorbing phase (Bi2O3 beside NiO under Cu Kα), the beam sees less of the
inside of each strongly absorbing grain than the mixture's mean absorption implies, so that phase's peaks are
weaker than its weight fraction says. Brindley (1945) corrects each phase's intensity by

    τ_i = (1/V) ∫_grain exp(−(μ_i − μ̄) x) dV,

with μ_i the phase's linear attenuation coefficient, μ̄ the mixture's (volume-fraction weighted) and x the
beam's path inside the grain to and from the volume element. Here x is computed for spherical grains in
Bragg-Brentano geometry at θ = 30° on a fixed quadrature of the sphere, and μ from the structure's composition and
density with the mass attenuation coefficients of ``xraydb``. Hill-Howard fractions become w_i ∝ S_i (m V)_i / τ_i.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from pymatgen.core import Structure

from analysis.powder_model import ReferencePhase

__all__ = ["linear_attenuation_per_um", "brindley_tau", "brindley_fractions"]

_THETA_RAD = np.radians(30.0)


@lru_cache(maxsize=256)
def _linear_attenuation(formula: str, density_g_cm3: float, wavelength_angstrom: float) -> float:
    import xraydb

    energy_ev = 12398.419843 / wavelength_angstrom
    return float(xraydb.material_mu(formula, energy_ev, density=density_g_cm3)) * 1e-4  # 1/cm -> 1/µm


def linear_attenuation_per_um(structure: Structure, wavelength_angstrom: float) -> float:
    """The linear attenuation coefficient μ of this crystal structure, in 1/µm at this wavelength."""
    return _linear_attenuation(structure.composition.formula.replace(" ", ""), float(structure.density),
                               round(float(wavelength_angstrom), 6))


@lru_cache(maxsize=1)
def _path_lengths() -> NDArray[np.float64]:
    """In+out path lengths (in grain radii) of points filling the unit sphere, for incidence and exit at θ."""
    grid = (np.arange(24) + 0.5) / 24 * 2 - 1
    points = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 3)
    points = points[np.sum(points**2, axis=1) < 1.0]
    incoming = np.array([np.cos(_THETA_RAD), 0.0, -np.sin(_THETA_RAD)])  # the beam travels down into the sample
    outgoing = np.array([np.cos(_THETA_RAD), 0.0, np.sin(_THETA_RAD)])

    def to_surface(direction: NDArray[np.float64]) -> NDArray[np.float64]:
        b = points @ direction
        return -b + np.sqrt(b**2 - (np.sum(points**2, axis=1) - 1.0))

    return to_surface(-incoming) + to_surface(outgoing)


def brindley_tau(contrast_per_um: float, radius_um: float) -> float:
    """Brindley's τ for a spherical grain of ``radius_um`` whose μ exceeds the mixture's by ``contrast_per_um``."""
    return float(np.mean(np.exp(-contrast_per_um * radius_um * _path_lengths())))


def brindley_fractions(
    references: Sequence[ReferencePhase],
    scale_mass_volume: NDArray[np.float64],
    wavelength_angstrom: float,
    particle_size_um: float,
    iterations: int = 30,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Weight fractions corrected for microabsorption, and the τ of each phase.

    Args:
        references: the phases.
        scale_mass_volume: `p` values S_i (m V)_i of the Hill-Howard relation.
        wavelength_angstrom: the radiation.
        particle_size_um: the grains' diameter in µm.
    """
    mu = np.array([linear_attenuation_per_um(phase.structure, wavelength_angstrom) for phase in references])
    density = np.array([float(phase.structure.density) for phase in references])
    tau = np.ones(len(references))
    fractions = scale_mass_volume / max(float(scale_mass_volume.sum()), 1e-300)
    for _ in range(iterations):  # μ̄ depends on the fractions, which depend on τ: a fixed point
        volume = fractions / density
        mean_mu = float(np.sum(volume * mu) / max(float(volume.sum()), 1e-300))
        tau = np.array([brindley_tau(m - mean_mu, particle_size_um / 2.0) for m in mu])
        corrected = scale_mass_volume / tau
        fractions = corrected / max(float(corrected.sum()), 1e-300)
    return fractions, tau
