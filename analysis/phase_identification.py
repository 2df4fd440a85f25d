"""Phase identification against a library of reference phases, with open-set rejection ("unknown phase present").

Two steps:

1. **Screening.** Every library phase is rendered as a few unit patterns (crystallite sizes 10, 30 and 100 nm; its
   reference cell scaled by −0.4 ... +0.8 % so that small lattice changes and zero shifts are covered). Non-negative
   least squares of the pattern on all of them plus a Chebyshev background gives each phase's share of the
   diffracted intensity: the ranking.
2. **Refinement and the open-set test.** The phases whose share passes ``min_share`` (at most ``max_phases``) are
   refined with the whole-pattern fit (:func:`analysis.phase_quantification.quantify_phases`). If the pattern holds
   a phase the library lacks, the best fit of the known phases leaves peaks unexplained. Two statistics measure it:

   - the reduced χ² of the fit with Poisson weights (≈ 1 when the model explains the data to within noise);
   - the *unexplained intensity*: the residual ``y − calc`` summed in windows about one peak width wide; windows
     whose excess is above ``significance`` standard deviations of their counts are unexplained peaks, and their
     excess counts divided by the fitted diffracted counts is the unexplained fraction.

   A refined phase below ``min_fraction`` (or 3 standard deviations) is dropped and the rest refined again. Before
   declaring "unknown phase present" (either statistic past its threshold), the next screening candidates (share ≥
   0.5 %) get a second chance: a minor library phase just below ``min_share`` is a known explanation of the misfit.
   The thresholds were set on simulated TiO2 patterns (``tests/test_analysis_phase_identification.py``,
   ``bench/analysis.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from numpy.polynomial import chebyshev
from numpy.typing import NDArray
from pymatgen.core import Structure
from scipy.optimize import nnls

from analysis.instrument_profile import InstrumentProfile
from analysis.phase_quantification import FitOptions, Measurement, PhaseQuantification, quantify_phases, radiation_of
from analysis.powder_model import (
    Radiation,
    ReferencePhase,
    free_lattice_parameters,
    load_reference_phase,
    phase_pattern,
)
from instruments.readings import Diffractogram

__all__ = ["Candidate", "OpenSetThresholds", "PhaseIdentification", "PhaseLibrary", "identify_phases"]

_SCREEN_SIZES_NM = (10.0, 30.0, 100.0)
_SCREEN_SCALES = (0.996, 1.0, 1.004, 1.008)
_SECOND_CHANCE_SHARE = 0.005


@dataclass(frozen=True)
class OpenSetThresholds:
    """When a pattern is declared to hold an unknown phase.

    Attributes:
        reduced_chi2: reduced χ² of the refined fit above which the known phases do not explain the data (None: not
            used; a real laboratory fit of the right phases sits at 3-10, so a fixed threshold carries no
            information there).
        unexplained_fraction: unexplained peak counts / fitted diffracted counts above which a phase is missing.
        significance: standard deviations of a window's counts its excess must pass to count as unexplained; the
            standard deviation is the counting noise widened by the fit's own misfit level (sqrt of the reduced χ²
            when above 1), so a misfit spread over the whole pattern is not taken for a missing phase's peaks.
        window_deg: width of the residual windows in degrees 2θ (about a peak width).
        decoy_significance: a refined phase is kept only if leaving it out raises χ² by more than this many
            standard deviations of the misfit (χ² change / (reduced χ² x Bérar-Lelann factor), square-rooted).
    """

    reduced_chi2: float | None = 1.2
    unexplained_fraction: float = 0.01
    significance: float = 5.0
    window_deg: float = 0.3
    decoy_significance: float = 5.0


@dataclass(frozen=True)
class Candidate:
    """One library phase as the screening sees it.

    Attributes:
        name: the phase's name.
        share: its share of the pattern's diffracted intensity in the screening fit, in [0, 1].
    """

    name: str
    share: float


@dataclass(frozen=True)
class PhaseIdentification:
    """The result of :func:`identify_phases`.

    Attributes:
        candidates: every library phase, best first.
        phases: the phases found (refined), best first.
        unknown_phase: whether a phase absent from the library is present.
        reduced_chi2: reduced χ² of the refinement of ``phases``.
        unexplained_fraction: unexplained peak counts / fitted diffracted counts.
        rwp: weighted-profile R factor of the refinement.
        fit: the refinement itself (fractions, lattices, sizes with uncertainties).
    """

    candidates: list[Candidate]
    phases: list[str]
    unknown_phase: bool
    reduced_chi2: float
    unexplained_fraction: float
    rwp: float
    fit: PhaseQuantification | None = field(default=None, repr=False)


class PhaseLibrary:
    """Candidate phases from built-in names, CIF paths or pymatgen structures, with reflections per radiation.

    Args:
        sources: ``{name: source}`` or a sequence of sources (named by file stem or reduced formula).
    """

    def __init__(self, sources: dict[str, str | Path | Structure] | Sequence[str | Path | Structure]) -> None:
        if isinstance(sources, dict):
            self.sources: list[tuple[str | None, str | Path | Structure]] = list(sources.items())
        else:
            self.sources = [(None, source) for source in sources]
        if not self.sources:
            raise ValueError("a phase library needs at least one phase")
        self._phases: dict[tuple[Radiation, float], list[ReferencePhase]] = {}
        self.screening_cache: dict[tuple[object, ...], list[NDArray[np.float64]]] = {}

    def phases_for(self, radiation: Radiation, two_theta_max_deg: float) -> list[ReferencePhase]:
        """The library's reference phases with reflections for this radiation and range (built once)."""
        key = (radiation, round(two_theta_max_deg, 1))
        if key not in self._phases:
            self._phases[key] = [
                load_reference_phase(source, radiation, two_theta_max_deg, name=name) for name, source in self.sources
            ]
        return self._phases[key]


def _screening_columns(
    phase: ReferencePhase,
    x: NDArray[np.float64],
    radiation: Radiation,
    uvw: tuple[float, float, float],
    asymmetry: float = 0.0,
    zero_shift_deg: float = 0.0,
) -> list[NDArray[np.float64]]:
    reference = free_lattice_parameters(phase.structure, phase.crystal_system)
    return [
        phase_pattern(
            phase,
            x,
            radiation,
            {k: v * scale if k in ("a", "b", "c") else v for k, v in reference.items()},
            size,
            0.0,
            zero_shift_deg,
            uvw,
            asymmetry=asymmetry,
            anomalous=True,
        )
        for size in _SCREEN_SIZES_NM
        for scale in _SCREEN_SCALES
    ]


def screen(
    pattern: Diffractogram,
    phases: Sequence[ReferencePhase],
    caglioti_uvw_deg2: tuple[float, float, float] = (0.004, -0.002, 0.002),
    background_terms: int = 6,
    cache: dict[tuple[object, ...], list[NDArray[np.float64]]] | None = None,
    instrument: InstrumentProfile | None = None,
) -> list[Candidate]:
    """Rank ``phases`` by their share of the diffracted intensity in a non-negative least-squares fit, best first.

    ``cache`` (e.g. :attr:`PhaseLibrary.screening_cache`) keeps the rendered unit patterns per phase, grid,
    radiation and resolution, so that screening many patterns on one grid renders each phase once.
    """
    x, y = pattern.two_theta_deg, pattern.counts
    radiation = radiation_of(pattern)
    asymmetry = zero = 0.0
    if instrument is not None:
        radiation, caglioti_uvw_deg2 = instrument.radiation_for(radiation), instrument.caglioti_uvw_deg2
        asymmetry, zero = instrument.asymmetry, instrument.zero_shift_deg
    sigma = np.sqrt(np.maximum(y, 1.0))
    t = 2.0 * (x - x[0]) / (x[-1] - x[0]) - 1.0
    basis = chebyshev.chebvander(t, background_terms - 1)
    columns, owner = [], []
    grid_key = (float(x[0]), float(x[-1]), x.size, radiation, tuple(caglioti_uvw_deg2), asymmetry, zero)
    for p, phase in enumerate(phases):
        key = (phase.name, *phase.structure.lattice.abc, *grid_key)
        rendered = None if cache is None else cache.get(key)
        if rendered is None:
            rendered = _screening_columns(phase, x, radiation, caglioti_uvw_deg2, asymmetry, zero)
            if cache is not None:
                cache[key] = rendered
        for column in rendered:
            columns.append(column)
            owner.append(p)
    design = np.column_stack([basis, -basis, *columns]) / sigma[:, None]
    solution, _ = nnls(design, y / sigma, maxiter=5000)
    coefficients = solution[2 * background_terms :]
    counts = np.array([c * column.sum() for c, column in zip(coefficients, columns, strict=True)])
    per_phase = np.bincount(np.array(owner), weights=counts, minlength=len(phases))
    total = per_phase.sum()
    shares = per_phase / total if total > 0 else np.zeros(len(phases))
    ranked = sorted(zip((p.name for p in phases), shares, strict=True), key=lambda item: -item[1])
    return [Candidate(name, float(share)) for name, share in ranked]


def unexplained_fraction(pattern: Diffractogram, fit: PhaseQuantification, significance: float,
                         window_deg: float) -> float:
    """Counts of significant positive residual peaks divided by the fit's diffracted counts (see module docstring)."""
    y = pattern.counts
    residual = y - fit.calculated
    step = float(np.median(np.diff(pattern.two_theta_deg)))
    width = max(int(round(window_deg / step)), 1)
    kernel = np.ones(width)
    excess = np.convolve(residual, kernel, mode="same")
    misfit = np.sqrt(max(fit.reduced_chi2, 1.0) * fit.correlation_factor)
    noise = misfit * np.sqrt(np.convolve(np.maximum(fit.calculated, 1.0), kernel, mode="same"))
    significant = excess > significance * noise
    unexplained = float(np.sum(np.clip(residual, 0.0, None)[_dilate(significant, width // 2)]))
    diffracted = float(np.sum(np.clip(fit.calculated - fit.background, 0.0, None)))
    return unexplained / diffracted if diffracted > 0 else float("inf")


def _statistical_std(measurement: Measurement) -> float:
    """The statistical std when known: whether a phase is there is a question for the data, not for the instrument
    profile's model error (which would hide a real 10 % phase)."""
    return measurement.std_statistical if np.isfinite(measurement.std_statistical) else measurement.std


def _chi2(pattern: Diffractogram, fit: PhaseQuantification) -> float:
    return float(np.sum((pattern.counts - fit.calculated) ** 2 / np.maximum(pattern.counts, 1.0)))


def _without_decoys(
    pattern: Diffractogram,
    fit: PhaseQuantification,
    names: list[str],
    fit_of: Callable[[list[str]], PhaseQuantification],
    significance: float,
    shares: dict[str, float],
) -> tuple[PhaseQuantification, list[str]]:
    """Drop minor phases (below 10 % of the screening's diffracted intensity: a weakly scattering phase can hold a
    large weight fraction) whose removal does not worsen the fit significantly: the χ² change, in units of the
    misfit level (reduced χ² times the Bérar-Lelann factor), must exceed ``significance²``."""
    for name in sorted(names, key=lambda n: shares.get(n, 0.0)):
        if len(names) < 2 or shares.get(name, 0.0) >= 0.10:
            break
        rest = [other for other in names if other != name]
        without = fit_of(rest)
        misfit = max(fit.reduced_chi2, 1.0) * fit.correlation_factor
        if (_chi2(pattern, without) - _chi2(pattern, fit)) / misfit < significance**2:
            fit, names = without, rest
    return fit, names


def _dilate(mask: NDArray[np.bool_], half_width: int) -> NDArray[np.bool_]:
    if half_width <= 0:
        return mask
    return np.convolve(mask.astype(float), np.ones(2 * half_width + 1), mode="same") > 0


def identify_phases(
    pattern: Diffractogram,
    library: PhaseLibrary | Sequence[ReferencePhase],
    max_phases: int = 3,
    min_share: float = 0.03,
    min_fraction: float = 0.01,
    thresholds: OpenSetThresholds | None = None,
    caglioti_uvw_deg2: tuple[float, float, float] = (0.004, -0.002, 0.002),
    instrument: InstrumentProfile | None = None,
) -> PhaseIdentification:
    """Rank the library's phases for ``pattern``, refine the likely ones, and test for an unknown phase.

    Args:
        pattern: the measured diffractogram (counts).
        library: a :class:`PhaseLibrary` or reference phases built for the pattern's radiation.
        max_phases: at most this many phases are refined.
        min_share: a phase needs this share of the diffracted intensity in the screening to be refined.
        min_fraction: a refined phase below this weight fraction (or below 3 standard deviations) is dropped.
        thresholds: the open-set decision (:class:`OpenSetThresholds`).
        caglioti_uvw_deg2: the instrument's resolution U, V, W in deg² (ignored with ``instrument``).
        instrument: the diffractometer's profile (widths, asymmetry, Kβ leak), for screening and refinement.
    """
    cache = None
    radiation = radiation_of(pattern)
    options = None
    if instrument is not None:
        radiation, caglioti_uvw_deg2 = instrument.radiation_for(radiation), instrument.caglioti_uvw_deg2
        options = FitOptions(asymmetry=instrument.asymmetry, fraction_model_error=instrument.fraction_model_error)
    if isinstance(library, PhaseLibrary):
        phases = library.phases_for(radiation, float(pattern.two_theta_deg[-1]))
        cache = library.screening_cache
    else:
        phases = list(library)
    thresholds = thresholds or OpenSetThresholds()
    candidates = screen(pattern, phases, caglioti_uvw_deg2, cache=cache, instrument=instrument)
    chosen = [c.name for c in candidates if c.share >= min_share][:max_phases] or [candidates[0].name]
    by_name = {p.name: p for p in phases}
    shares = {c.name: c.share for c in candidates}
    if instrument is not None and instrument.unexplained_fraction is not None:
        thresholds = replace(thresholds, unexplained_fraction=instrument.unexplained_fraction)

    def fit_of(names: list[str]) -> PhaseQuantification:
        return quantify_phases(
            pattern, [by_name[name] for name in names], caglioti_uvw_deg2, options=options, radiation=radiation
        )

    def refine(names: list[str]) -> tuple[PhaseQuantification, list[str], float, bool]:
        fit = fit_of(names)
        # A phase the refinement cannot tell from zero (below min_fraction or 3 standard deviations) is dropped and
        # the rest refined again, so that a decoy that soaked up a little misfit in the screening is not reported.
        found = [
            p.name for p in fit.phases
            if p.weight_fraction.value >= max(min_fraction, 3.0 * _statistical_std(p.weight_fraction))
        ] or [names[0]]
        if len(found) < len(names):
            fit = fit_of(found)
        unexplained = unexplained_fraction(pattern, fit, thresholds.significance, thresholds.window_deg)
        if unexplained <= thresholds.unexplained_fraction:  # a fit missing a phase cannot tell decoys apart
            fit, found = _without_decoys(pattern, fit, found, fit_of, thresholds.decoy_significance, shares)
            unexplained = unexplained_fraction(pattern, fit, thresholds.significance, thresholds.window_deg)
        unknown = unexplained > thresholds.unexplained_fraction
        if thresholds.reduced_chi2 is not None and instrument is None:
            unknown = unknown or fit.reduced_chi2 > thresholds.reduced_chi2
        return fit, found, unexplained, unknown

    fit, found, unexplained, unknown = refine(chosen)
    # Second chance before "unknown": a minor library phase below min_share in the screening may be what is missing.
    extra = [c.name for c in candidates if c.name not in chosen and c.share >= _SECOND_CHANCE_SHARE]
    extra = extra[: max_phases - len(chosen)]
    if unknown and extra:
        retry = refine(chosen + extra)
        if not retry[3] or retry[0].reduced_chi2 < fit.reduced_chi2:
            fit, found, unexplained, unknown = retry
    return PhaseIdentification(
        candidates=candidates,
        phases=found,
        unknown_phase=bool(unknown),
        reduced_chi2=fit.reduced_chi2,
        unexplained_fraction=unexplained,
        rwp=fit.rwp,
        fit=fit,
    )
