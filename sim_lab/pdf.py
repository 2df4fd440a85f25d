"""A simulated total-scattering (PDF) measurement: G(r) of crystalline nanoparticles from atomic positions.

The model, per phase with structure ``s`` and crystallite diameter ``D``
-----------------------------------------------------------------------
1. **Pair histogram of the bulk crystal** (real space, periodic): for every atom i of the unit cell and every
   neighbour j within ``r_max`` (pymatgen neighbour list), ``R(r) = (1/N) Σ_ij w_ij g(r − r_ij; σ)`` with X-ray
   weights ``w_ij = Z_i Z_j / ⟨Z⟩²`` (scattering factors taken at Q = 0; a disordered site has its mean Z) and
   Gaussian peaks of width ``σ = thermal_sigma_angstrom`` (uncorrelated motion, the same for every pair).
2. **Reduced PDF of the bulk**: ``G_bulk(r) = R(r)/r − 4π r ρ0`` with ρ0 the number density (atoms/Å³).
3. **Finite spherical particle**: ``G(r) = G_bulk(r) · γ0(r)`` with the sphere's characteristic function
   ``γ0(r) = 1 − 3r/(2D) + r³/(2D³)`` for ``r < D`` and 0 beyond (as PDFgui's ``spdiameter``).
4. **Mixture**: ``G = Σ_p w_p G_p`` with the phases' weight fractions ``w_p`` (an approximation: exact mixing
   weights by scattering power are not modelled).
5. **Measurement**: ``F(Q) = ∫ G(r) sin(Qr) dr`` on ``0 ≤ Q ≤ q_max``, damped by the instrument resolution
   ``exp(−(q_damp r)²/2)`` applied to G beforehand; Gaussian noise of sd ``noise · (Q/q_max) / sqrt(exposure_s)``
   is added to F(Q) (counting noise in S(Q) grows into F = Q(S − 1)); ``G(r) = (2/π) ∫₀^q_max F(Q) sin(Qr) dQ``
   gives the terminated, noisy G(r) on the reported grid.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray
from pymatgen.core import Structure

from instruments.readings import PairDistribution
from sim_lab.xrd import PhaseInSample

__all__ = ["PDFDiffractometer", "bulk_pdf", "sphere_envelope"]

_HISTOGRAM_STEP_ANGSTROM = 0.002
_cache: dict[tuple[object, ...], tuple[NDArray[np.float64], NDArray[np.float64]]] = {}
_cache_lock = threading.Lock()


def sphere_envelope(r_angstrom: NDArray[np.float64], diameter_angstrom: float) -> NDArray[np.float64]:
    """Characteristic function γ0(r) of a sphere of diameter ``diameter_angstrom``: 1 at r = 0, 0 for r ≥ D."""
    x = np.asarray(r_angstrom, dtype=np.float64) / diameter_angstrom
    return np.where(x < 1.0, 1.0 - 1.5 * x + 0.5 * x**3, 0.0)


def _structure_key(structure: Structure) -> tuple[object, ...]:
    lattice = tuple(round(float(p), 6) for p in (*structure.lattice.abc, *structure.lattice.angles))
    return lattice + tuple((s.species_string, *(round(float(f), 6) for f in s.frac_coords)) for s in structure)


def bulk_pdf(
    structure: Structure, r_angstrom: NDArray[np.float64], thermal_sigma_angstrom: float
) -> NDArray[np.float64]:
    """The reduced PDF ``G_bulk(r)`` in 1/Å² of an infinite crystal on ``r_angstrom`` (steps 1–2 above)."""
    r = np.asarray(r_angstrom, dtype=np.float64)
    r_max = float(r.max()) + 6.0 * thermal_sigma_angstrom + 0.1
    key = (_structure_key(structure), round(r_max, 3), round(thermal_sigma_angstrom, 6))
    with _cache_lock:
        cached = _cache.get(key)
    if cached is None:
        cached = _pair_histogram(structure, r_max, thermal_sigma_angstrom)
        with _cache_lock:
            _cache[key] = cached
    grid, pair_density = cached
    density = len(structure) / structure.volume
    histogram = np.interp(r, grid, pair_density)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(r > 0, histogram / r, 0.0) - 4.0 * math.pi * density * r
    return g


def _pair_histogram(
    structure: Structure, r_max: float, sigma: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``R(r)`` on a fine grid: the Z-weighted, Gaussian-broadened pair-distance density per atom."""
    centres, neighbours, _, distances = structure.get_neighbor_list(r_max)
    z = np.array([sum(el.Z * occ for el, occ in site.species.items()) for site in structure], dtype=np.float64)
    weights = z[centres] * z[neighbours] / np.mean(z) ** 2 / len(structure)
    edges = np.arange(0.0, r_max + _HISTOGRAM_STEP_ANGSTROM, _HISTOGRAM_STEP_ANGSTROM)
    histogram, _ = np.histogram(distances, bins=edges, weights=weights)
    grid = 0.5 * (edges[1:] + edges[:-1])
    half_width = int(math.ceil(6.0 * sigma / _HISTOGRAM_STEP_ANGSTROM))
    offsets = np.arange(-half_width, half_width + 1) * _HISTOGRAM_STEP_ANGSTROM
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2) / (sigma * math.sqrt(2.0 * math.pi))
    density = np.convolve(histogram, kernel, mode="same")  # Σ_b count_b g(r − r_b): pairs per Å per atom
    return grid, density


@dataclass(frozen=True)
class PDFDiffractometer:
    """A rapid-acquisition total-scattering setup (synchrotron, area detector), configured once.

    Attributes:
        r_min_angstrom, r_max_angstrom, r_step_angstrom: the reported r grid in Å.
        q_max_inv_angstrom: the Qmax at which the Fourier transform is terminated, 1/Å.
        q_damp_inv_angstrom: instrumental Q resolution damping of G(r), 1/Å.
        thermal_sigma_angstrom: Gaussian width of every pair peak (thermal and static disorder), Å.
        noise: sd of F(Q) at Q = q_max for a 1 s exposure, in 1/Å.
        name: instrument name reported in readings' metadata.
    """

    r_min_angstrom: float = 1.0
    r_max_angstrom: float = 30.0
    r_step_angstrom: float = 0.01
    q_max_inv_angstrom: float = 25.0
    q_damp_inv_angstrom: float = 0.03
    thermal_sigma_angstrom: float = 0.07
    noise: float = 0.5
    name: str = "sim-pdf"

    def __post_init__(self) -> None:
        if not 0 <= self.r_min_angstrom < self.r_max_angstrom or self.r_step_angstrom <= 0:
            raise ValueError("need 0 <= r_min_angstrom < r_max_angstrom and r_step_angstrom > 0")
        if self.q_max_inv_angstrom <= 0 or self.thermal_sigma_angstrom <= 0 or self.noise < 0:
            raise ValueError("need q_max_inv_angstrom > 0, thermal_sigma_angstrom > 0 and noise >= 0")

    @cached_property
    def _transforms(
        self,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Fine r grid, Q grid and the sine-transform matrices r -> Q and Q -> reported r (built once)."""
        step = 0.01
        r_fine = np.arange(step, self.r_max_angstrom + 15.0, step)  # beyond r_max: the window edge stays clean
        dq = math.pi / (2.0 * float(r_fine[-1]))
        q = np.arange(dq, self.q_max_inv_angstrom + dq / 2, dq)
        forward = np.sin(np.outer(q, r_fine)) * step
        backward = (2.0 / math.pi) * np.sin(np.outer(self.r_angstrom, q)) * dq
        return r_fine, q, forward, backward

    @property
    def r_angstrom(self) -> NDArray[np.float64]:
        """The `n`-dim reported r grid in Å."""
        n = int(round((self.r_max_angstrom - self.r_min_angstrom) / self.r_step_angstrom)) + 1
        return self.r_min_angstrom + self.r_step_angstrom * np.arange(n, dtype=np.float64)

    def ideal_pdf(self, sample: Sequence[PhaseInSample], r_angstrom: NDArray[np.float64]) -> NDArray[np.float64]:
        """Untermintated, noise-free G(r) of the sample (steps 1–4), without resolution damping."""
        g = np.zeros_like(np.asarray(r_angstrom, dtype=np.float64))
        for phase in sample:
            if phase.weight_fraction > 0:
                envelope = sphere_envelope(r_angstrom, 10.0 * phase.crystallite_size_nm)
                g += (
                    phase.weight_fraction
                    * envelope
                    * bulk_pdf(phase.structure, r_angstrom, self.thermal_sigma_angstrom)
                )
        return g

    def measure(
        self,
        sample: Sequence[PhaseInSample],
        exposure_s: float,
        rng: np.random.Generator | None,
        sample_id: str | None = None,
    ) -> PairDistribution:
        """Measure for ``exposure_s`` seconds; ``rng=None`` gives the noise-free, terminated G(r)."""
        if exposure_s <= 0:
            raise ValueError(f"exposure_s must be positive, got {exposure_s}")
        r_fine, q, forward, backward = self._transforms
        g_fine = self.ideal_pdf(sample, r_fine) * np.exp(-0.5 * (self.q_damp_inv_angstrom * r_fine) ** 2)
        f_q = forward @ g_fine
        if rng is not None and self.noise > 0:
            sd = self.noise * (q / self.q_max_inv_angstrom) / math.sqrt(exposure_s)
            f_q = f_q + rng.normal(0.0, 1.0, q.size) * sd
        r = self.r_angstrom
        g = backward @ f_q
        return PairDistribution(
            r_angstrom=r,
            g_r=g,
            q_max_inv_angstrom=self.q_max_inv_angstrom,
            sample_id=sample_id,
            metadata={
                "instrument": self.name,
                "exposure_s": exposure_s,
                "q_damp_inv_angstrom": self.q_damp_inv_angstrom,
            },
        )
