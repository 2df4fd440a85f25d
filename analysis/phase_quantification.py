"""Quantitative phase analysis of a powder pattern by a whole-pattern fit of reference phases.

A Rietveld-like fit by variable projection: the linear parameters (a Chebyshev background and one non-negative
scale per phase) are solved exactly for every trial of the nonlinear ones (a zero shift and, as options, a sample
displacement and a peak asymmetry; per phase the free lattice parameters, the crystallite size, the microstrain
and, as an option, a displacement factor B), which ``scipy.optimize.least_squares`` refines. A phase's pattern is
recomputed only when one of its own parameters moves, so a Jacobian costs one pattern per parameter.

Weight fractions follow from the scale factors by the Hill-Howard relation w_p = S_p (m V)_p / Σ_i S_i (m V)_i,
with m the unit-cell mass and V its volume, divided by Brindley's particle absorption factor τ_p when a grain size
is given (``FitOptions.particle_size_um``, see :mod:`analysis.absorption`).

Uncertainties: the statistical one is the fit's covariance, (JᵀJ)⁻¹ scaled by the reduced χ², widened by the
Bérar-Lelann factor for serially correlated residuals (a real pattern's misfit is smooth, not white), and
propagated to every quantity. The reported ``std`` of a weight fraction adds in quadrature a model-error term,
``FitOptions.fraction_model_error`` x sqrt(w (1 − w)), measured on real laboratory scans (see ``bench/analysis.py
--real``): what no counting statistic can know about microabsorption, orientation and imperfect references.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.polynomial import chebyshev
from numpy.typing import NDArray
from scipy.optimize import least_squares, nnls
from threadpoolctl import threadpool_limits

from analysis.powder_model import (
    CU_KBETA_ANGSTROM,
    Radiation,
    ReferencePhase,
    free_lattice_parameters,
    phase_pattern,
)
from instruments.readings import Diffractogram

__all__ = ["Measurement", "PhaseResult", "PhaseQuantification", "FitOptions", "quantify_phases", "radiation_of"]

_MIN_SIZE_NM = 2.0
_MAX_SIZE_NM = 1000.0
_MAX_MICROSTRAIN = 0.01
_MIN_REFINED_FRACTION = 0.02
_MIN_SIZED_FRACTION = 0.01
_SIZE_GRID_NM = (4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
_LATTICE_RANGE = 0.03
_ANGLE_RANGE_DEG = 3.0
_B_RANGE = (0.0, 5.0)
_ZERO_RANGE_DEG = 0.5


@dataclass(frozen=True)
class Measurement:
    """An estimated value with its one-standard-deviation uncertainty, in the unit its name gives.

    ``std`` is the uncertainty to use; ``std_statistical`` (when known) is its purely statistical part, from
    counting noise and the fit's covariance alone.
    """

    value: float
    std: float
    std_statistical: float = math.nan


@dataclass(frozen=True)
class FitOptions:
    """The physics of the fit, each a documented choice with a default that holds on real laboratory scans.

    Attributes:
        anomalous: include f' and f'' of every element at the radiation's wavelengths.
        refine_b_iso: refine an isotropic displacement B per phase (else fixed at ``b_iso_angstrom2``).
        b_iso_angstrom2: B (Å²) of every phase, fixed or as the refinement's start.
        asymmetry: start (or fixed value) of the axial-divergence asymmetry ``A`` (``a = A / tan 2θ``).
        refine_asymmetry: refine ``A``.
        refine_displacement: refine a sample-height displacement (peaks shift as cos θ) besides the zero shift.
        fraction_model_error: the model-error term of a weight fraction's std, times sqrt(w (1 − w)).
        correlation_correction: widen statistical uncertainties by the Bérar-Lelann factor.
        particle_size_um: the grains' diameter for Brindley's microabsorption correction (None: no correction).
        refine_instrument: refine the Caglioti U and W and the Kβ leak too (to make an instrument profile, see
            :mod:`analysis.instrument_profile`; a scan's own fit keeps its instrument's profile fixed).
        kbeta_ratio: start of the Kβ leak when ``refine_instrument`` (else the radiation's own is used).
        max_evaluations: the refinement's budget of model evaluations.
    """

    anomalous: bool = True
    refine_b_iso: bool = False
    b_iso_angstrom2: float = 0.0
    asymmetry: float = 0.0
    refine_asymmetry: bool = False
    refine_displacement: bool = False
    fraction_model_error: float = 0.0
    correlation_correction: bool = True
    particle_size_um: float | None = None
    refine_instrument: bool = False
    kbeta_ratio: float = 0.0
    max_evaluations: int = 60


@dataclass(frozen=True)
class PhaseResult:
    """What the fit says about one phase."""

    name: str
    weight_fraction: Measurement
    crystallite_size_nm: Measurement
    microstrain: Measurement
    lattice_angstrom: dict[str, Measurement]
    scale: Measurement
    b_iso_angstrom2: Measurement = Measurement(math.nan, math.nan)


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
        rexp: the expected R factor of counting noise alone (Rwp / Rexp ≈ sqrt of the reduced χ²).
        warnings: what a scientist should know before trusting the numbers (poor fit, parameters at bounds).
        correlation_factor: the Bérar-Lelann factor applied to statistical uncertainties (1: white residuals).
    """

    phases: list[PhaseResult]
    zero_shift_deg: Measurement
    rwp: float
    reduced_chi2: float
    calculated: NDArray[np.float64] = field(repr=False)
    background: NDArray[np.float64] = field(repr=False)
    rexp: float = math.nan
    warnings: tuple[str, ...] = ()
    correlation_factor: float = 1.0
    displacement_deg: Measurement = Measurement(0.0, 0.0)
    asymmetry: Measurement = Measurement(0.0, 0.0)
    caglioti_uvw_deg2: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    kbeta_ratio: float = 0.0

    def quantities(self) -> dict[str, Measurement]:
        """Flat ``name -> Measurement`` map, e.g. ``anatase_fraction``, ``rutile_crystallite_size_nm``."""
        out: dict[str, Measurement] = {}
        for phase in self.phases:
            out[f"{phase.name}_fraction"] = phase.weight_fraction
            out[f"{phase.name}_crystallite_size_nm"] = phase.crystallite_size_nm
            out[f"{phase.name}_microstrain"] = phase.microstrain
            for axis, value in phase.lattice_angstrom.items():
                unit = "deg" if axis in ("alpha", "beta", "gamma") else "angstrom"
                out[f"{phase.name}_{axis}_{unit}"] = value
        out["zero_shift_deg"] = self.zero_shift_deg
        out["rwp"] = Measurement(self.rwp, 0.0)
        return out


def radiation_of(pattern: Diffractogram) -> Radiation:
    """The radiation a diffractogram was measured with."""
    return Radiation(pattern.wavelength_angstrom, pattern.wavelength_ka2_angstrom, pattern.ka2_ratio)


@dataclass
class _Parameter:
    """One nonlinear parameter: its name, owner (phase index, or None for a global one), start and bounds."""

    name: str
    phase: int | None
    start: float
    lower: float
    upper: float
    scale: float


def quantify_phases(
    pattern: Diffractogram,
    references: Sequence[ReferencePhase],
    caglioti_uvw_deg2: tuple[float, float, float] = (0.004, -0.002, 0.002),
    background_terms: int = 6,
    options: FitOptions | None = None,
    radiation: Radiation | None = None,
) -> PhaseQuantification:
    """Fit ``references`` to ``pattern`` and return fractions, sizes and lattices with uncertainties.

    Args:
        pattern: the measured diffractogram (counts, not normalised).
        references: candidate phases (see :func:`analysis.powder_model.load_reference_phase`).
        caglioti_uvw_deg2: instrumental U, V, W in deg², from a line-profile standard (e.g. LaB6).
        background_terms: number of Chebyshev background coefficients.
        options: the fit's physics (see :class:`FitOptions`).
        radiation: the lines to model (default: the pattern's Kα1/Kα2); give one with a Kβ line to model Kβ.

    Raises:
        ValueError: if the pattern has too few points for the number of refined parameters.
    """
    # The fit's matrices are small (n x ~20 parameters): one BLAS thread is fastest. Many threads contending for
    # two cores while instruments and other analyses ran made each SVD of the fit ~100 times slower.
    with threadpool_limits(limits=1, user_api="blas"):
        return _Fit(pattern, list(references), caglioti_uvw_deg2, background_terms, options or FitOptions(),
                    radiation or radiation_of(pattern)).run()


class _Fit:
    """One variable-projection fit (see the module's docs)."""

    def __init__(
        self,
        pattern: Diffractogram,
        references: list[ReferencePhase],
        uvw: tuple[float, float, float],
        background_terms: int,
        options: FitOptions,
        radiation: Radiation,
    ) -> None:
        self.references = references
        self.uvw = uvw
        self.options = options
        self.radiation = radiation
        self.x, self.y = pattern.two_theta_deg, pattern.counts
        self.sigma = np.sqrt(np.maximum(self.y, 1.0))
        t = 2.0 * (self.x - self.x[0]) / (self.x[-1] - self.x[0]) - 1.0
        self.basis = chebyshev.chebvander(t, background_terms - 1)  # n x background_terms
        self.lattice_start = [free_lattice_parameters(p.structure, p.crystal_system) for p in references]
        self.parameters = self._parameters()
        n_linear = background_terms + len(references)
        if self.x.size <= len(self.parameters) + n_linear + 5:
            raise ValueError(
                f"pattern has {self.x.size} points, too few to refine {len(self.parameters) + n_linear} parameters"
            )
        self._units: dict[tuple[int, bytes], NDArray[np.float64]] = {}

    # -- the parameters -----------------------------------------------------------------------------------

    def _parameters(self) -> list[_Parameter]:
        options = self.options
        parameters = [_Parameter("zero_shift_deg", None, 0.0, -_ZERO_RANGE_DEG, _ZERO_RANGE_DEG, 0.01)]
        if options.refine_displacement:
            parameters.append(_Parameter("displacement_deg", None, 0.0, -0.5, 0.5, 0.01))
        if options.refine_asymmetry:
            parameters.append(_Parameter("asymmetry", None, options.asymmetry, -0.3, 0.3, 0.01))
        if options.refine_instrument:
            u, _, w = self.uvw
            parameters.append(_Parameter("caglioti_u", None, max(u, 0.0), 0.0, 0.5, 1e-3))
            parameters.append(_Parameter("caglioti_w", None, max(w, 1e-5), 1e-5, 0.5, 1e-3))
            parameters.append(_Parameter("kbeta_ratio", None, options.kbeta_ratio, 0.0, 0.05, 1e-3))
        for p, start in enumerate(self.lattice_start):
            for axis, value in start.items():
                if axis in ("alpha", "beta", "gamma"):
                    low, high, scale = value - _ANGLE_RANGE_DEG, value + _ANGLE_RANGE_DEG, 0.01
                else:
                    low, high, scale = value * (1 - _LATTICE_RANGE), value * (1 + _LATTICE_RANGE), 1e-3 * value
                parameters.append(_Parameter(f"lattice:{axis}", p, value, low, high, scale))
            parameters.append(_Parameter("inverse_size", p, 1.0 / 32.0, 1.0 / _MAX_SIZE_NM, 1.0 / _MIN_SIZE_NM, 0.01))
            parameters.append(_Parameter("microstrain", p, 0.0, 0.0, _MAX_MICROSTRAIN, 1e-3))
            if options.refine_b_iso:
                parameters.append(_Parameter("b_iso", p, options.b_iso_angstrom2, *_B_RANGE, 0.1))
        return parameters

    def _values(self, vector: NDArray[np.float64]) -> tuple[dict[str, float], list[dict[str, float]]]:
        """(global values, per-phase values) of a full parameter vector."""
        globals_: dict[str, float] = {
            "displacement_deg": 0.0,
            "asymmetry": self.options.asymmetry,
            "caglioti_u": self.uvw[0],
            "caglioti_w": self.uvw[2],
            "kbeta_ratio": self.radiation.kbeta_ratio,
        }
        phases: list[dict[str, float]] = [{"b_iso": self.options.b_iso_angstrom2} for _ in self.references]
        for parameter, value in zip(self.parameters, vector, strict=True):
            if parameter.phase is None:
                globals_[parameter.name] = float(value)
            else:
                phases[parameter.phase][parameter.name] = float(value)
        return globals_, phases

    # -- the model ----------------------------------------------------------------------------------------

    def unit_pattern(self, p: int, globals_: dict[str, float], own: dict[str, float]) -> NDArray[np.float64]:
        """Phase ``p``'s pattern at unit scale for these parameter values (cached by value)."""
        key_values = [globals_[k] for k in sorted(globals_)] + [own[k] for k in sorted(own)]
        key = (p, np.array(key_values).tobytes())
        cached = self._units.get(key)
        if cached is not None:
            return cached
        lattice = {k.removeprefix("lattice:"): v for k, v in own.items() if k.startswith("lattice:")}
        radiation = self.radiation
        if globals_["kbeta_ratio"] != radiation.kbeta_ratio:
            radiation = replace(
                radiation,
                wavelength_kbeta_angstrom=radiation.wavelength_kbeta_angstrom or CU_KBETA_ANGSTROM,
                kbeta_ratio=globals_["kbeta_ratio"],
            )
        unit = phase_pattern(
            self.references[p],
            self.x,
            radiation,
            lattice,
            1.0 / own["inverse_size"],
            own["microstrain"],
            globals_["zero_shift_deg"],
            (globals_["caglioti_u"], self.uvw[1], globals_["caglioti_w"]),
            asymmetry=globals_["asymmetry"],
            b_iso_angstrom2=own["b_iso"],
            anomalous=self.options.anomalous,
            displacement_deg=globals_["displacement_deg"],
        )
        if len(self._units) > 4096:
            self._units.clear()
        self._units[key] = unit
        return unit

    def units(self, vector: NDArray[np.float64]) -> list[NDArray[np.float64]]:
        globals_, phases = self._values(vector)
        return [self.unit_pattern(p, globals_, phases[p]) for p in range(len(self.references))]

    def linear(self, units: list[NDArray[np.float64]]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(background coefficients and non-negative scales, weighted residuals) for these phase patterns."""
        design = np.column_stack([self.basis, *units]) / self.sigma[:, None]
        target = self.y / self.sigma
        coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
        n_background = self.basis.shape[1]
        if np.any(coefficients[n_background:] < 0.0):
            coefficients, _ = _nonnegative_fit(self.basis, units, self.y, self.sigma)
        return coefficients, target - design @ coefficients

    def residuals(self, vector: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.linear(self.units(vector))[1]

    def jacobian(self, vector: NDArray[np.float64], free: NDArray[np.bool_], full: NDArray[np.float64]) -> NDArray:
        """Forward-difference Jacobian of the projected residuals over the free parameters; moving a phase's own
        parameter recomputes that phase's pattern only."""
        base_units = self.units(full)
        base = self.linear(base_units)[1]
        columns = []
        for index in np.flatnonzero(free):
            parameter = self.parameters[index]
            moved, step = self._moved(full, index)
            if parameter.phase is None:
                units = self.units(moved)
            else:
                globals_, phases = self._values(moved)
                units = list(base_units)
                units[parameter.phase] = self.unit_pattern(parameter.phase, globals_, phases[parameter.phase])
            columns.append((self.linear(units)[1] - base) / step)
        return np.column_stack(columns) if columns else np.zeros((base.size, 0))

    def _moved(self, vector: NDArray[np.float64], index: int) -> tuple[NDArray[np.float64], float]:
        """``vector`` with parameter ``index`` moved by a forward-difference step (backwards at its upper bound)."""
        parameter = self.parameters[index]
        step = 1e-3 * parameter.scale if parameter.name != "inverse_size" else 1e-3 * max(vector[index], 1e-3)
        if vector[index] + step > parameter.upper:
            step = -step
        moved = vector.copy()
        moved[index] += step
        return moved, step

    # -- the fit ------------------------------------------------------------------------------------------

    def start(self) -> NDArray[np.float64]:
        """Reference lattices; for each phase the crystallite size on a coarse grid that, with scales and
        background from non-negative least squares, best explains the pattern."""
        vector = np.array([parameter.start for parameter in self.parameters])
        globals_, phases = self._values(vector)
        grid = []
        for p in range(len(self.references)):
            per_size = []
            for size in _SIZE_GRID_NM:
                own = dict(phases[p], inverse_size=1.0 / size)
                per_size.append(self.unit_pattern(p, globals_, own))
            grid.append(per_size)
        best_chi2, best = np.inf, (0,) * len(self.references)
        for combination in itertools.product(range(len(_SIZE_GRID_NM)), repeat=len(self.references)):
            _, chi2 = _nonnegative_fit(self.basis, [grid[p][k] for p, k in enumerate(combination)], self.y, self.sigma)
            if chi2 < best_chi2:
                best_chi2, best = chi2, combination
        for index, parameter in enumerate(self.parameters):
            if parameter.name == "inverse_size":
                vector[index] = 1.0 / _SIZE_GRID_NM[best[parameter.phase]]
        return vector

    def run(self) -> PhaseQuantification:
        start = self.start()
        lower = np.array([parameter.lower for parameter in self.parameters])
        upper = np.array([parameter.upper for parameter in self.parameters])
        start = np.clip(start, lower, upper)
        coefficients, _ = self.linear(self.units(start))
        fractions = self._fractions(coefficients, start)
        # A phase the starting scales call (nearly) absent keeps its reference lattice, size and strain: the data
        # cannot determine them, and letting them wander only slows the fit.
        free = np.array(
            [q.phase is None or fractions[q.phase] >= _MIN_REFINED_FRACTION for q in self.parameters]
        )

        def full(free_values: NDArray[np.float64]) -> NDArray[np.float64]:
            vector = start.copy()
            vector[free] = free_values
            return vector

        x_scale = np.array([parameter.scale for parameter in self.parameters])
        if np.any(free):
            fit = least_squares(
                lambda values: self.residuals(full(values)),
                start[free],
                jac=lambda values: self.jacobian(full(values), free, full(values)),
                bounds=(lower[free], upper[free]),
                x_scale=x_scale[free],
                method="trf",
                max_nfev=self.options.max_evaluations,
            )
            vector = full(fit.x)
        else:
            vector = start
        return self._result(vector, free, lower, upper)

    def _mass_volume(self, vector: NDArray[np.float64]) -> NDArray[np.float64]:
        _, phases = self._values(vector)
        out = []
        for p, phase in enumerate(self.references):
            lattice = {k.removeprefix("lattice:"): v for k, v in phases[p].items() if k.startswith("lattice:")}
            out.append(phase.cell_mass_amu * phase.cell_volume_angstrom3(lattice))
        return np.array(out)

    def _fractions(self, coefficients: NDArray[np.float64], vector: NDArray[np.float64]) -> NDArray[np.float64]:
        scales = coefficients[self.basis.shape[1] :]
        weighted = scales * self._mass_volume(vector)
        total = weighted.sum()
        return weighted / total if total > 0 else np.ones_like(weighted) / max(len(weighted), 1)

    def _result(
        self, vector: NDArray[np.float64], free: NDArray[np.bool_], lower: NDArray, upper: NDArray
    ) -> PhaseQuantification:
        n_background, n_phases = self.basis.shape[1], len(self.references)
        units = self.units(vector)
        coefficients, weighted_residuals = self.linear(units)
        scales = coefficients[n_background:]
        calculated = self.basis @ coefficients[:n_background] + sum(
            (s * u for s, u in zip(scales, units, strict=True)), np.zeros_like(self.y)
        )
        background = self.basis @ coefficients[:n_background]

        # The full Jacobian (linear and free nonlinear parameters, the linear ones held) for the covariance.
        columns = [-self.basis / self.sigma[:, None]] + [-(u / self.sigma)[:, None] for u in units]
        for index in np.flatnonzero(free):
            moved, step = self._moved(vector, index)
            moved_units = self.units(moved)
            change = sum(
                (s * (m - u) for s, m, u in zip(scales, moved_units, units, strict=True)), np.zeros_like(self.y)
            )
            columns.append(-(change / step / self.sigma)[:, None])
        jacobian = np.hstack(columns)
        dof = max(self.x.size - jacobian.shape[1], 1)
        chi2 = float(np.sum(weighted_residuals**2))
        reduced_chi2 = chi2 / dof
        correlation = _berar_lelann(weighted_residuals) if self.options.correlation_correction else 1.0
        covariance = _covariance(jacobian) * reduced_chi2 * correlation
        errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
        scale_cov = covariance[n_background : n_background + n_phases, n_background : n_background + n_phases]
        nonlinear_error = np.zeros(len(self.parameters))
        nonlinear_error[free] = errors[n_background + n_phases :]

        weights = 1.0 / self.sigma**2
        rwp = float(np.sqrt(np.sum(weights * (self.y - calculated) ** 2) / np.sum(weights * self.y**2)))
        rexp = float(np.sqrt(dof / np.sum(weights * self.y**2)))

        mass_volume = self._mass_volume(vector)
        if self.options.particle_size_um is not None and np.sum(scales * mass_volume) > 0:
            from analysis.absorption import brindley_fractions

            _, tau = brindley_fractions(
                self.references, scales * mass_volume, self.radiation.wavelength_angstrom, self.options.particle_size_um
            )
            mass_volume = mass_volume / tau
        weighted = scales * mass_volume
        total = weighted.sum()
        fractions = weighted / total if total > 0 else np.zeros_like(weighted)
        if total > 0:
            # d w_p / d S_q = mV_q (δ_pq − w_p) / Σ
            jac = (np.eye(n_phases) - fractions[:, None]) * mass_volume[None, :] / total
            fraction_stat = np.sqrt(np.clip(np.diag(jac @ scale_cov @ jac.T), 0.0, None))
        else:
            fraction_stat = np.ones_like(fractions)
        model = self.options.fraction_model_error * np.sqrt(np.clip(fractions * (1.0 - fractions), 0.0, None))
        fraction_std = np.sqrt(fraction_stat**2 + model**2)

        by_phase: list[dict[str, tuple[float, float]]] = [{} for _ in self.references]
        global_values: dict[str, tuple[float, float]] = {}
        for index, parameter in enumerate(self.parameters):
            pair = (float(vector[index]), float(nonlinear_error[index]) if free[index] else math.nan)
            if parameter.phase is None:
                global_values[parameter.name] = pair
            else:
                by_phase[parameter.phase][parameter.name] = pair

        results = []
        for p, phase in enumerate(self.references):
            own = by_phase[p]
            inverse_size, inverse_error = own["inverse_size"]
            size_nm, size_std = 1.0 / inverse_size, inverse_error / inverse_size**2
            if not free[self._index(p, "inverse_size")] or fractions[p] < _MIN_SIZED_FRACTION:
                size_nm = size_std = math.nan  # a phase that is (nearly) absent has no measurable crystallite size
            lattice = {
                name.removeprefix("lattice:"): Measurement(value, error, error)
                for name, (value, error) in own.items()
                if name.startswith("lattice:")
            }
            strain, strain_std = own["microstrain"]
            b_value, b_std = own.get("b_iso", (self.options.b_iso_angstrom2, math.nan))
            results.append(
                PhaseResult(
                    name=phase.name,
                    weight_fraction=Measurement(float(fractions[p]), float(fraction_std[p]), float(fraction_stat[p])),
                    crystallite_size_nm=Measurement(float(size_nm), float(size_std), float(size_std)),
                    microstrain=Measurement(strain, strain_std, strain_std),
                    lattice_angstrom=lattice,
                    scale=Measurement(float(scales[p]), float(errors[n_background + p])),
                    b_iso_angstrom2=Measurement(b_value, b_std, b_std),
                )
            )
        zero = global_values["zero_shift_deg"]
        displacement = global_values.get("displacement_deg", (0.0, 0.0))
        asymmetry = global_values.get("asymmetry", (self.options.asymmetry, 0.0))
        return PhaseQuantification(
            phases=results,
            zero_shift_deg=Measurement(zero[0], zero[1], zero[1]),
            rwp=rwp,
            reduced_chi2=reduced_chi2,
            calculated=calculated,
            background=background,
            rexp=rexp,
            warnings=tuple(self._warnings(vector, free, lower, upper, fractions, rwp, rexp)),
            correlation_factor=float(correlation),
            displacement_deg=Measurement(*displacement),
            asymmetry=Measurement(*asymmetry),
            caglioti_uvw_deg2=(
                global_values.get("caglioti_u", (self.uvw[0], 0.0))[0],
                self.uvw[1],
                global_values.get("caglioti_w", (self.uvw[2], 0.0))[0],
            ),
            kbeta_ratio=global_values.get("kbeta_ratio", (self.radiation.kbeta_ratio, 0.0))[0],
        )

    def _index(self, phase: int, name: str) -> int:
        return next(i for i, q in enumerate(self.parameters) if q.phase == phase and q.name == name)

    def _warnings(
        self,
        vector: NDArray[np.float64],
        free: NDArray[np.bool_],
        lower: NDArray[np.float64],
        upper: NDArray[np.float64],
        fractions: NDArray[np.float64],
        rwp: float,
        rexp: float,
    ) -> list[str]:
        out = []
        if rwp > POOR_FIT_RWP or rwp > POOR_FIT_RATIO * rexp:
            out.append(
                f"poor fit: Rwp {100 * rwp:.1f} % against {100 * rexp:.1f} % from counting noise alone; a phase may "
                "be missing or a reference wrong, so treat the fractions with care"
            )
        for index, parameter in enumerate(self.parameters):
            if not free[index] or parameter.name == "microstrain" and vector[index] - lower[index] <= 1e-6:
                continue  # zero strain is a result, not a stuck parameter
            span = upper[index] - lower[index]
            if min(vector[index] - lower[index], upper[index] - vector[index]) <= 1e-4 * span:
                owner = "" if parameter.phase is None else f"{self.references[parameter.phase].name} "
                name = parameter.name.removeprefix("lattice:")
                if parameter.name == "inverse_size":
                    name, value = "crystallite_size_nm", 1.0 / vector[index]
                else:
                    value = vector[index]
                out.append(f"{owner}{name} = {value:.4g} sits at a bound of its range: the model cannot fit it")
        return out


#: An Rwp above this, or above ``POOR_FIT_RATIO`` times the counting-noise floor Rexp, is reported as a poor fit.
POOR_FIT_RWP = 0.25
POOR_FIT_RATIO = 5.0


def _berar_lelann(weighted_residuals: NDArray[np.float64]) -> float:
    """Bérar & Lelann (1991): the factor (1 + ρ) / (1 − ρ) by which serially correlated residuals (lag-1
    autocorrelation ρ > 0) make the least-squares variances too small; 1 for white residuals."""
    r = weighted_residuals - weighted_residuals.mean()
    denominator = float(np.sum(r * r))
    if denominator <= 0:
        return 1.0
    rho = float(np.sum(r[1:] * r[:-1]) / denominator)
    rho = min(max(rho, 0.0), 0.99)
    return (1.0 + rho) / (1.0 - rho)


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
