"""PDF: the diameter of crystalline nanoparticles from the damping of G(r), with a reference crystal structure.

The model (as PDFgui's ``spdiameter``): the reduced PDF of the bulk crystal, ``G_bulk(r) = R(r) / r − 4π r ρ0``,
where ``R(r)`` is the X-ray-weighted pair-distance density per atom (weights ``Z_i Z_j / ⟨Z⟩²``, Gaussian pair peaks
of width σ) and ρ0 the number density, is multiplied by the characteristic function of a sphere of diameter D,
``γ0(r) = 1 − 3r/(2D) + r³/(2D³)`` for r < D (0 beyond), by a scale, and by the instrument's resolution damping
``exp(−(q_damp r)² / 2)``; then it is terminated at the measurement's Qmax like the data (sine transform to F(Q) on
0..Qmax and back). Scale, D and σ are fitted by least squares over ``r_range``.

G(r) points are correlated over about the resolution π/Qmax, so the standard deviations from the fit's covariance
(with the noise level estimated from the residual) are inflated by sqrt(π/Qmax / Δr), the number of points per
independent datum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from pymatgen.core import Structure
from scipy.optimize import least_squares

from analysis.phase_quantification import Measurement
from instruments.readings import PairDistribution

__all__ = ["NanoparticleFit", "bulk_pdf", "fit_nanoparticle", "sphere_envelope"]

_HISTOGRAM_STEP = 0.002
_FINE_STEP = 0.01


def sphere_envelope(r_angstrom: NDArray[np.float64], diameter_angstrom: float) -> NDArray[np.float64]:
    """Characteristic function γ0(r) of a sphere of diameter ``diameter_angstrom`` (1 at r = 0, 0 for r ≥ D)."""
    x = np.asarray(r_angstrom, dtype=np.float64) / diameter_angstrom
    return np.where(x < 1.0, 1.0 - 1.5 * x + 0.5 * x**3, 0.0)


@lru_cache(maxsize=16)
def _histogram(structure_json: str, r_max: float) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """Z-weighted pair-distance histogram per atom on a fine grid (bin centres, weights per bin) and ρ0 in 1/Å³."""
    structure = Structure.from_str(structure_json, fmt="json")
    centres, neighbours, _, distances = structure.get_neighbor_list(r_max)
    z = np.array([sum(el.Z * occ for el, occ in site.species.items()) for site in structure], dtype=np.float64)
    weights = z[centres] * z[neighbours] / np.mean(z) ** 2 / len(structure)
    edges = np.arange(0.0, r_max + _HISTOGRAM_STEP, _HISTOGRAM_STEP)
    histogram, _ = np.histogram(distances, bins=edges, weights=weights)
    return 0.5 * (edges[1:] + edges[:-1]), histogram, len(structure) / structure.volume


def bulk_pdf(structure: Structure, r_angstrom: NDArray[np.float64], sigma_angstrom: float) -> NDArray[np.float64]:
    """The bulk crystal's reduced PDF G(r) in 1/Å² on ``r_angstrom`` with Gaussian pair peaks of width σ (Å)."""
    r = np.asarray(r_angstrom, dtype=np.float64)
    grid, histogram, density = _histogram(structure.to_json(), float(r.max()) + 6.0 * sigma_angstrom + 0.5)
    # Gaussian broadening of the histogram (a convolution on its uniform grid), then onto r.
    half = int(math.ceil(6.0 * sigma_angstrom / _HISTOGRAM_STEP))
    offsets = _HISTOGRAM_STEP * np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (offsets / sigma_angstrom) ** 2) / (math.sqrt(2.0 * math.pi) * sigma_angstrom)
    density_r = np.interp(r, grid, np.convolve(histogram, kernel, mode="same"))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, density_r / r, 0.0) - 4.0 * math.pi * density * r


@dataclass(frozen=True)
class NanoparticleFit:
    """The result of :func:`fit_nanoparticle`.

    Attributes:
        diameter_nm: the spherical particle diameter in nm.
        scale: the scale of G (the phase's share of the scattering; 1 for a pure phase).
        sigma_angstrom: the Gaussian pair-peak width in Å.
        noise: the standard deviation of G(r) the residual implies, 1/Å².
        r_angstrom, calculated: `n` the fitted range and model.
    """

    diameter_nm: Measurement
    scale: Measurement
    sigma_angstrom: Measurement
    noise: float
    r_angstrom: NDArray[np.float64] = field(repr=False)
    calculated: NDArray[np.float64] = field(repr=False)

    def quantities(self) -> dict[str, Measurement]:
        return {"particle_diameter_nm": self.diameter_nm, "pdf_scale": self.scale,
                "pdf_sigma_angstrom": self.sigma_angstrom}


class _Terminator:
    """Sine transform of a model G(r) on a fine grid to F(Q) on 0..Qmax and back onto the data's r."""

    def __init__(self, r_out: NDArray[np.float64], q_max: float) -> None:
        self.r_fine = np.arange(_FINE_STEP, float(r_out.max()) + 15.0, _FINE_STEP)
        dq = math.pi / (2.0 * float(self.r_fine[-1]))
        q = np.arange(dq, q_max + dq / 2, dq)
        self.forward = np.sin(np.outer(q, self.r_fine)) * _FINE_STEP
        self.backward = (2.0 / math.pi) * np.sin(np.outer(r_out, q)) * dq

    def __call__(self, g_fine: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.backward @ (self.forward @ g_fine)


def fit_nanoparticle(
    pdf: PairDistribution,
    structure: Structure,
    r_range_angstrom: tuple[float, float] | None = None,
    q_damp_inv_angstrom: float | None = None,
) -> NanoparticleFit:
    """Fit the spherical-nanoparticle model of ``structure`` to ``pdf``.

    Args:
        pdf: the measured G(r).
        structure: the crystal structure of the particles.
        r_range_angstrom: the fitted range; default 1.5 Å to the end of the data.
        q_damp_inv_angstrom: the instrument's resolution damping; default from the reading's metadata, else 0.03.
    """
    r_all, g_all = pdf.r_angstrom, pdf.g_r
    low, high = r_range_angstrom or (1.5, float(r_all[-1]))
    keep = (r_all >= low) & (r_all <= high)
    r, g = r_all[keep], g_all[keep]
    q_damp = q_damp_inv_angstrom if q_damp_inv_angstrom is not None else float(
        pdf.metadata.get("q_damp_inv_angstrom", 0.03))
    terminate = _Terminator(r, pdf.q_max_inv_angstrom)
    r_fine = terminate.r_fine
    damping = np.exp(-0.5 * (q_damp * r_fine) ** 2)
    bulk_cache: dict[float, NDArray[np.float64]] = {}

    def shape(diameter: float, sigma: float) -> NDArray[np.float64]:
        key = round(sigma, 5)
        if key not in bulk_cache:
            bulk_cache[key] = bulk_pdf(structure, r_fine, sigma) * damping
        return terminate(bulk_cache[key] * sphere_envelope(r_fine, diameter))

    # Start: the diameter on a coarse grid with the best linear scale, thermal width 0.08 Å.
    best = (math.inf, 50.0, 1.0)
    for diameter in np.geomspace(15.0, 1000.0, 25):
        unit = shape(float(diameter), 0.08)
        scale = float(unit @ g / max(unit @ unit, 1e-30))
        residual = float(np.sum((g - scale * unit) ** 2))
        if residual < best[0]:
            best = (residual, float(diameter), scale)

    def residuals(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return x[0] * shape(x[1], x[2]) - g

    fit = least_squares(residuals, np.array([best[2], best[1], 0.08]), bounds=([0.0, 5.0, 0.01], [10.0, 5000.0, 0.5]),
                        x_scale=np.array([0.1, 10.0, 0.01]), diff_step=1e-3, max_nfev=100)
    dof = max(r.size - 3, 1)
    noise = math.sqrt(2.0 * fit.cost / dof)
    correlated = math.sqrt(max((math.pi / pdf.q_max_inv_angstrom) / float(np.median(np.diff(r))), 1.0))
    _, singular, vt = np.linalg.svd(fit.jac, full_matrices=False)
    kept = singular > singular[0] * 1e-12
    inverse = np.zeros_like(singular)
    inverse[kept] = 1.0 / singular[kept] ** 2
    errors = np.sqrt(np.clip(np.diag((vt.T * inverse) @ vt), 0.0, None)) * noise * correlated
    return NanoparticleFit(
        diameter_nm=Measurement(float(fit.x[1]) / 10.0, float(errors[1]) / 10.0),
        scale=Measurement(float(fit.x[0]), float(errors[0])),
        sigma_angstrom=Measurement(float(fit.x[2]), float(errors[2])),
        noise=noise,
        r_angstrom=r,
        calculated=fit.fun + g,
    )
