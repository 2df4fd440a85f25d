"""Quantitative phase analysis of a powder pattern by least-squares fitting of reference phases.

A Rietveld-like whole-pattern fit (scipy ``least_squares``): per phase a scale factor, the free lattice
parameters, the crystallite size and the microstrain; globally a zero shift and a Chebyshev background. Weight
fractions follow from the scale factors by the Hill-Howard relation w_p = S_p (m V)_p / Σ_i S_i (m V)_i, with m
the unit-cell mass and V its volume.
Uncertainties come from the fit's covariance, (JᵀJ)⁻¹ scaled by the reduced χ², propagated to every quantity.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import chebyshev
from numpy.typing import NDArray
from scipy.optimize import least_squares, nnls
from threadpoolctl import threadpool_limits

from analysis.powder_model import Radiation, ReferencePhase, free_lattice_parameters, phase_pattern
from instruments.readings import Diffractogram

__all__ = ["Measurement", "PhaseResult", "PhaseQuantification", "quantify_phases", "radiation_of"]

_MIN_SIZE_NM = 2.0
_MAX_SIZE_NM = 1000.0
_MAX_MICROSTRAIN = 0.01
_MIN_REFINED_FRACTION = 0.02
_MIN_SIZED_FRACTION = 0.01
_SIZE_GRID_NM = (4.0, 8.0, 16.0, 32.0, 64.0, 128.0)


@dataclass(frozen=True)
class Measurement:
    """An estimated value with its one-standard-deviation uncertainty, in the unit its name gives."""

    value: float
    std: float


@dataclass(frozen=True)
class PhaseResult:
    """What the fit says about one phase."""

    name: str
    weight_fraction: Measurement
    crystallite_size_nm: Measurement
    microstrain: Measurement
    lattice_angstrom: dict[str, Measurement]
    scale: Measurement


@dataclass(frozen=True)
class PhaseQuantification:
    """The result of :func:`quantify_phases`.

    Attributes:
        phases: one result per reference phase, in the order given.
        zero_shift_deg: refined zero shift of the 2θ scale.
        rwp: weighted-profile R factor (0 is a perfect fit); high values flag a missing phase.
        reduced_chi2: χ² per degree of freedom with Poisson weights (≈1 for a model that explains the data).
        calculated: `n` calculated counts on the pattern's grid.
        background: `n` refined background counts.
    """

    phases: list[PhaseResult]
    zero_shift_deg: Measurement
    rwp: float
    reduced_chi2: float
    calculated: NDArray[np.float64] = field(repr=False)
    background: NDArray[np.float64] = field(repr=False)

    def quantities(self) -> dict[str, Measurement]:
        """Flat ``name -> Measurement`` map, e.g. ``anatase_fraction``, ``rutile_crystallite_size_nm``."""
        out: dict[str, Measurement] = {}
        for phase in self.phases:
            out[f"{phase.name}_fraction"] = phase.weight_fraction
            out[f"{phase.name}_crystallite_size_nm"] = phase.crystallite_size_nm
            out[f"{phase.name}_microstrain"] = phase.microstrain
            for axis, value in phase.lattice_angstrom.items():
                out[f"{phase.name}_{axis}_angstrom"] = value
        out["zero_shift_deg"] = self.zero_shift_deg
        out["rwp"] = Measurement(self.rwp, 0.0)
        return out


def radiation_of(pattern: Diffractogram) -> Radiation:
    """The radiation a diffractogram was measured with."""
    return Radiation(pattern.wavelength_angstrom, pattern.wavelength_ka2_angstrom, pattern.ka2_ratio)


@dataclass
class _Layout:
    """Where each refined quantity sits in the parameter vector."""

    n_background: int
    lattice_names: list[list[str]]

    def slices(self, n_phases: int) -> tuple[int, slice, list[int], list[slice], list[int], list[int]]:
        zero = 0
        background = slice(1, 1 + self.n_background)
        cursor = 1 + self.n_background
        scales, lattices, sizes, strains = [], [], [], []
        for p in range(n_phases):
            scales.append(cursor)
            lattices.append(slice(cursor + 1, cursor + 1 + len(self.lattice_names[p])))
            sizes.append(cursor + 1 + len(self.lattice_names[p]))
            strains.append(sizes[-1] + 1)
            cursor = strains[-1] + 1
        return zero, background, scales, lattices, sizes, strains


def quantify_phases(
    pattern: Diffractogram,
    references: Sequence[ReferencePhase],
    caglioti_uvw_deg2: tuple[float, float, float] = (0.004, -0.002, 0.002),
    background_terms: int = 6,
) -> PhaseQuantification:
    """Fit ``references`` to ``pattern`` and return fractions, sizes and lattices with uncertainties.

    Args:
        pattern: the measured diffractogram (counts, not normalised).
        references: candidate phases (see :func:`analysis.powder_model.load_reference_phase`).
        caglioti_uvw_deg2: instrumental U, V, W in deg², from a line-profile standard (e.g. LaB6).
        background_terms: number of Chebyshev background coefficients.

    Raises:
        ValueError: if the pattern has too few points for the number of refined parameters.
    """
    # The fit's matrices are small (n x ~20 parameters): one BLAS thread is fastest. Many threads contending for
    # two cores while instruments and other analyses ran made each SVD of the fit ~100 times slower.
    with threadpool_limits(limits=1, user_api="blas"):
        return _quantify_phases(pattern, references, caglioti_uvw_deg2, background_terms)


def _quantify_phases(
    pattern: Diffractogram,
    references: Sequence[ReferencePhase],
    caglioti_uvw_deg2: tuple[float, float, float] = (0.004, -0.002, 0.002),
    background_terms: int = 6,
) -> PhaseQuantification:
    radiation = radiation_of(pattern)
    x, y = pattern.two_theta_deg, pattern.counts
    sigma = np.sqrt(np.maximum(y, 1.0))
    t = 2.0 * (x - x[0]) / (x[-1] - x[0]) - 1.0
    basis = chebyshev.chebvander(t, background_terms - 1)  # n x background_terms
    references = list(references)
    lattice_start = [free_lattice_parameters(p.structure, p.crystal_system) for p in references]
    layout = _Layout(background_terms, [list(start) for start in lattice_start])
    zero_i, bg_s, scale_i, lat_s, size_i, strain_i = layout.slices(len(references))
    n_params = strain_i[-1] + 1 if references else 1 + background_terms
    if x.size <= n_params + 5:
        raise ValueError(f"pattern has {x.size} points, too few to refine {n_params} parameters")

    def unit_patterns(params: NDArray[np.float64]) -> list[NDArray[np.float64]]:
        out = []
        for p, phase in enumerate(references):
            lattice = dict(zip(layout.lattice_names[p], params[lat_s[p]], strict=True))
            out.append(
                phase_pattern(
                    phase,
                    x,
                    radiation,
                    lattice,
                    1.0 / params[size_i[p]],
                    params[strain_i[p]],
                    params[zero_i],
                    caglioti_uvw_deg2,
                )
            )
        return out

    def model(params: NDArray[np.float64]) -> NDArray[np.float64]:
        total = basis @ params[bg_s]
        for p, unit in enumerate(unit_patterns(params)):
            total = total + params[scale_i[p]] * unit
        return total

    # Starting point: reference lattices; for each phase the crystallite size on a coarse grid that, with scales
    # and background from non-negative least squares, best explains the pattern.
    start = np.zeros(n_params)
    for p in range(len(references)):
        start[lat_s[p]] = list(lattice_start[p].values())
    grid_patterns = [
        [
            phase_pattern(phase, x, radiation, lattice_start[p], size, 0.0, 0.0, caglioti_uvw_deg2)
            for size in _SIZE_GRID_NM
        ]
        for p, phase in enumerate(references)
    ]
    best_chi2, best_sizes, coefficients = np.inf, [_SIZE_GRID_NM[0]] * len(references), np.zeros(0)
    for combination in itertools.product(range(len(_SIZE_GRID_NM)), repeat=len(references)):
        units = [grid_patterns[p][k] for p, k in enumerate(combination)]
        found, chi2 = _nonnegative_fit(basis, units, y, sigma)
        if chi2 < best_chi2:
            best_chi2, coefficients = chi2, found
            best_sizes = [_SIZE_GRID_NM[k] for k in combination]
    start[bg_s] = coefficients[:background_terms]
    for p in range(len(references)):
        start[scale_i[p]] = coefficients[background_terms + p]
        start[size_i[p]] = 1.0 / best_sizes[p]

    lower = np.full(n_params, -np.inf)
    upper = np.full(n_params, np.inf)
    lower[zero_i], upper[zero_i] = -0.5, 0.5
    for p in range(len(references)):
        lower[scale_i[p]] = 0.0
        reference = np.array(list(lattice_start[p].values()))
        lower[lat_s[p]], upper[lat_s[p]] = reference * 0.97, reference * 1.03
        lower[size_i[p]], upper[size_i[p]] = 1.0 / _MAX_SIZE_NM, 1.0 / _MIN_SIZE_NM
        lower[strain_i[p]], upper[strain_i[p]] = 0.0, _MAX_MICROSTRAIN
    start = np.clip(start, lower, upper)
    start[zero_i] = 0.0

    # A phase the starting scales call (nearly) absent keeps its reference lattice, size and strain: the data
    # cannot determine them, and letting them wander only slows the fit.
    start_weight = np.array(
        [start[scale_i[p]] * phase.cell_mass_amu * phase.structure.volume for p, phase in enumerate(references)]
    )
    start_fraction = start_weight / start_weight.sum() if start_weight.sum() > 0 else np.ones_like(start_weight)
    free = np.ones(n_params, dtype=bool)
    for p in range(len(references)):
        if start_fraction[p] < _MIN_REFINED_FRACTION:
            free[lat_s[p]] = False
            free[[size_i[p], strain_i[p]]] = False

    def full(free_params: NDArray[np.float64]) -> NDArray[np.float64]:
        params = start.copy()
        params[free] = free_params
        return params

    def residuals(free_params: NDArray[np.float64]) -> NDArray[np.float64]:
        return (y - model(full(free_params))) / sigma

    x_scale = np.abs(start) + 1e-3
    x_scale[zero_i] = 0.01
    for p in range(len(references)):
        x_scale[strain_i[p]] = 1e-3
    fit = least_squares(
        residuals, start[free], bounds=(lower[free], upper[free]), x_scale=x_scale[free], method="trf", max_nfev=200
    )
    params = full(fit.x)
    dof = max(x.size - int(free.sum()), 1)
    chi2 = float(np.sum(fit.fun**2))
    reduced_chi2 = chi2 / dof
    covariance = np.zeros((n_params, n_params))
    covariance[np.ix_(free, free)] = _covariance(fit.jac) * reduced_chi2
    errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))

    calculated = model(params)
    background = basis @ params[bg_s]
    weights = 1.0 / sigma**2
    rwp = float(np.sqrt(np.sum(weights * (y - calculated) ** 2) / np.sum(weights * y**2)))

    # Hill-Howard weight fractions and their propagated uncertainty.
    mass_volume = np.array(
        [
            phase.cell_mass_amu
            * phase.cell_volume_angstrom3(dict(zip(layout.lattice_names[p], params[lat_s[p]], strict=True)))
            for p, phase in enumerate(references)
        ]
    )
    scales = params[scale_i]
    weighted = scales * mass_volume
    total = weighted.sum()
    fractions = weighted / total if total > 0 else np.zeros_like(weighted)
    scale_cov = covariance[np.ix_(scale_i, scale_i)]
    if total > 0:
        # d w_p / d S_q = mV_q (δ_pq − w_p) / Σ
        jac = (np.eye(len(references)) - fractions[:, None]) * mass_volume[None, :] / total
        fraction_std = np.sqrt(np.clip(np.diag(jac @ scale_cov @ jac.T), 0.0, None))
    else:
        fraction_std = np.ones_like(fractions)

    phases = []
    for p, phase in enumerate(references):
        inverse_size = params[size_i[p]]
        size_std = errors[size_i[p]] / inverse_size**2
        size_nm = 1.0 / inverse_size
        if not free[size_i[p]] or fractions[p] < _MIN_SIZED_FRACTION:
            size_nm = size_std = math.nan  # a phase that is (nearly) absent has no measurable crystallite size
        determined = bool(free[size_i[p]])  # an absent phase's lattice is its reference, not a measurement
        lattice = {
            axis: Measurement(float(value), float(err) if determined else math.nan)
            for axis, value, err in zip(layout.lattice_names[p], params[lat_s[p]], errors[lat_s[p]], strict=True)
        }
        phases.append(
            PhaseResult(
                name=phase.name,
                weight_fraction=Measurement(float(fractions[p]), float(fraction_std[p])),
                crystallite_size_nm=Measurement(float(size_nm), float(size_std)),
                microstrain=Measurement(float(params[strain_i[p]]), float(errors[strain_i[p]])),
                lattice_angstrom=lattice,
                scale=Measurement(float(scales[p]), float(errors[scale_i[p]])),
            )
        )
    return PhaseQuantification(
        phases=phases,
        zero_shift_deg=Measurement(float(params[zero_i]), float(errors[zero_i])),
        rwp=rwp,
        reduced_chi2=reduced_chi2,
        calculated=calculated,
        background=background,
    )


def _nonnegative_fit(
    basis: NDArray[np.float64], units: list[NDArray[np.float64]], y: NDArray[np.float64], sigma: NDArray[np.float64]
) -> tuple[NDArray[np.float64], float]:
    """Background coefficients (any sign) and non-negative phase scales by NNLS; returns them and χ²."""
    n_background = basis.shape[1]
    design = np.column_stack([basis, -basis, *units]) / sigma[:, None]
    solution, residual_norm = nnls(design, y / sigma, maxiter=2000)
    coefficients = np.concatenate(
        [solution[:n_background] - solution[n_background : 2 * n_background], solution[2 * n_background :]]
    )
    return coefficients, float(residual_norm**2)


def _covariance(jacobian: NDArray[np.float64]) -> NDArray[np.float64]:
    """(JᵀJ)⁻¹ via SVD, robust to parameters the data do not determine."""
    _, singular, vt = np.linalg.svd(jacobian, full_matrices=False)
    threshold = np.finfo(float).eps * max(jacobian.shape) * singular[0]
    inverse = np.where(singular > threshold, 1.0 / np.maximum(singular, threshold) ** 2, 0.0)
    return (vt.T * inverse) @ vt
