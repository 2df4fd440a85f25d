"""Analysis agents beyond the whole-pattern fit: network ensemble, phase identification, demixing, SAXS and PDF.

All share the interface of :class:`agents.xrd_phase_agent.XRDPhaseAgent`: ``tell`` them readings, ``report`` gives
:class:`~agents.xrd_phase_agent.AnalysisReport` s whose quantities are ``Measurement(value, std)`` in the units their
names carry, so the planner can take the standard deviations as observation noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pymatgen.core import Structure

from agents.xrd_phase_agent import AnalysisReport, XRDPhaseAgent
from analysis.demixing import Demixing, demix
from analysis.instrument_profile import InstrumentProfile
from analysis.ml import PowderEnsemble, load_ensemble
from analysis.pdf_fit import fit_nanoparticle
from analysis.phase_identification import OpenSetThresholds, PhaseIdentification, PhaseLibrary, identify_phases
from analysis.phase_quantification import Measurement
from analysis.readers import MIN_POINTS_TO_ANALYSE, read_pattern
from analysis.saxs_fit import SHAPES, SAXSAnalysis, fit_saxs
from instruments.readings import Diffractogram, PairDistribution, Reading, ScatteringCurve

__all__ = [
    "ANALYSES",
    "DemixingAgent",
    "PDFSizeAgent",
    "PhaseIdentificationAgent",
    "SAXSShapeAgent",
    "XRDNetworkAgent",
    "analyse_file",
]


def _diffractogram(agent: str, reading: Reading) -> Diffractogram:
    if not isinstance(reading, Diffractogram):
        raise TypeError(f"{agent} analyses diffractograms, not {type(reading).__name__}")
    return reading


class XRDNetworkAgent:
    """Phase fractions, lattice parameters and crystallite sizes from the trained network ensemble, in one pass.

    Readings told are analysed together at ``report`` (one batched forward pass: thousands of patterns per second).

    Args:
        model: a shipped ensemble name (``"tio2_calcination"``), a model-card path, or a loaded ensemble.
    """

    name = "xrd-network"

    def __init__(self, model: str | Path | PowderEnsemble = "tio2_calcination") -> None:
        self.ensemble = model if isinstance(model, PowderEnsemble) else load_ensemble(model)
        self._pending: list[Diffractogram] = []

    def tell(self, reading: Reading) -> None:
        """Queue a diffractogram (of the ensemble's radiation and 2θ range) for analysis."""
        pattern = _diffractogram(self.name, reading)
        self.ensemble.check_radiation(pattern)
        self._pending.append(pattern)

    def report(self) -> list[AnalysisReport]:
        """Analyse every reading told since the last report, in one batch."""
        pending, self._pending = self._pending, []
        if not pending:
            return []
        prediction = self.ensemble.predict(pending)
        return [AnalysisReport(self.name, p.sample_id, prediction.quantities(i)) for i, p in enumerate(pending)]

    def analyse(self, reading: Diffractogram) -> AnalysisReport:
        """Analyse one diffractogram now."""
        pattern = _diffractogram(self.name, reading)
        return AnalysisReport(self.name, pattern.sample_id, self.ensemble.predict([pattern]).quantities(0))


class PhaseIdentificationAgent:
    """Which library phases a pattern holds, their refined fractions, and whether an unknown phase is present.

    Reported quantities: ``unknown_phase`` (1 or 0), ``reduced_chi2``, ``unexplained_fraction``, ``rwp``, and the
    whole-pattern-fit quantities of the phases found (``<phase>_fraction``, ...). The full ranking is in
    :attr:`last_identification`.

    Args:
        library: ``{name: source}`` or sources (built-in names, CIF paths, pymatgen structures).
        thresholds: the open-set decision.
        caglioti_uvw_deg2: the diffractometer's resolution U, V, W in deg².
    """

    name = "xrd-phase-identification"

    def __init__(
        self,
        library: dict[str, str | Path | Structure] | Sequence[str | Path | Structure] | PhaseLibrary,
        thresholds: OpenSetThresholds | None = None,
        caglioti_uvw_deg2: tuple[float, float, float] = (0.004, -0.002, 0.002),
        instrument: InstrumentProfile | None = None,
    ) -> None:
        self.library = library if isinstance(library, PhaseLibrary) else PhaseLibrary(library)
        self.thresholds = thresholds or OpenSetThresholds()
        self.caglioti_uvw_deg2 = caglioti_uvw_deg2
        self.instrument = instrument
        self.last_identification: PhaseIdentification | None = None
        self._pending: list[Diffractogram] = []

    def tell(self, reading: Reading) -> None:
        self._pending.append(_diffractogram(self.name, reading))

    def report(self) -> list[AnalysisReport]:
        pending, self._pending = self._pending, []
        return [self.analyse(reading) for reading in pending]

    def analyse(self, reading: Diffractogram) -> AnalysisReport:
        result = identify_phases(reading, self.library, thresholds=self.thresholds,
                                 caglioti_uvw_deg2=self.caglioti_uvw_deg2, instrument=self.instrument)
        self.last_identification = result
        quantities = dict(result.fit.quantities()) if result.fit is not None else {}
        quantities.update({
            "unknown_phase": Measurement(float(result.unknown_phase), 0.0),
            "reduced_chi2": Measurement(result.reduced_chi2, 0.0),
            "unexplained_fraction": Measurement(result.unexplained_fraction, 0.0),
            "rwp": Measurement(result.rwp, 0.0),
        })
        warnings = result.fit.warnings if result.fit is not None else ()
        return AnalysisReport(self.name, reading.sample_id, quantities, result.fit, warnings)


class DemixingAgent:
    """NMF demixing of every diffractogram told so far (a composition spread or a time series).

    Unlike the per-pattern agents it keeps what it is told: each ``report`` demixes the whole set again and reports
    every sample: ``n_components``, ``region`` (label of its set of present components) and
    ``component_<k>_share`` (its share of diffracted intensity per component; std is not estimated and is NaN).
    The full result is in :attr:`last_demixing`.

    Args:
        max_components, presence_deviance, counts_per_unit: see :func:`analysis.demixing.demix`.
    """

    name = "xrd-nmf-demixing"

    def __init__(
        self, max_components: int = 6, presence_deviance: float = 100.0, counts_per_unit: float | None = None
    ) -> None:
        self.max_components = max_components
        self.presence_deviance = presence_deviance
        self.counts_per_unit = counts_per_unit  # None: inferred from the noise (analysis.demixing.counting_scale)
        self.patterns: list[Diffractogram] = []
        self.last_demixing: Demixing | None = None

    def tell(self, reading: Reading) -> None:
        self.patterns.append(_diffractogram(self.name, reading))

    def report(self) -> list[AnalysisReport]:
        if len(self.patterns) < 3:
            return []
        result = demix(
            self.patterns,
            max_components=self.max_components,
            presence_deviance=self.presence_deviance,
            counts_per_unit=self.counts_per_unit,
        )
        self.last_demixing = result
        reports = []
        for s, pattern in enumerate(self.patterns):
            quantities = {
                "n_components": Measurement(float(result.n_components), 0.0),
                "region": Measurement(float(result.regions[s]), 0.0),
            }
            for k in range(result.n_components):
                quantities[f"component_{k}_share"] = Measurement(float(result.weights[s, k]), math.nan)
            reports.append(AnalysisReport(self.name, pattern.sample_id, quantities))
        return reports


class SAXSShapeAgent:
    """Particle shape (sphere, cylinder, core-shell sphere), size and polydispersity from SAXS curves.

    Reported quantities: ``shape_<name>_probability`` per shape (std NaN), and the best shape's parameters with
    standard deviations (``radius_angstrom``, ``radius_pd``, ``length_angstrom``, ...). The shape's name is in
    :attr:`last_analysis`.

    Args:
        shapes, fixed: see :func:`analysis.saxs_fit.fit_saxs`.
    """

    name = "saxs-shape"

    def __init__(self, shapes: Sequence[str] | None = None, fixed: dict[str, dict[str, float]] | None = None) -> None:
        self.shapes = tuple(shapes) if shapes else tuple(SHAPES)
        self.fixed = fixed
        self.last_analysis: SAXSAnalysis | None = None
        self._pending: list[ScatteringCurve] = []

    def tell(self, reading: Reading) -> None:
        if not isinstance(reading, ScatteringCurve):
            raise TypeError(f"{self.name} analyses scattering curves, not {type(reading).__name__}")
        self._pending.append(reading)

    def report(self) -> list[AnalysisReport]:
        pending, self._pending = self._pending, []
        return [self.analyse(curve) for curve in pending]

    def analyse(self, reading: Reading) -> AnalysisReport:
        """Analyse one scattering curve now."""
        if not isinstance(reading, ScatteringCurve):
            raise TypeError(f"{self.name} analyses scattering curves, not {type(reading).__name__}")
        self.last_analysis = fit_saxs(reading, self.shapes, self.fixed)
        return AnalysisReport(self.name, reading.sample_id, self.last_analysis.quantities())


class PDFSizeAgent:
    """Nanoparticle diameter from pair distribution functions, with a reference crystal structure.

    Reported quantities: ``particle_diameter_nm``, ``pdf_scale``, ``pdf_sigma_angstrom``.

    Args:
        structure: the particles' crystal structure (pymatgen) or a CIF path.
        r_range_angstrom: the fitted r range (default 1.5 Å to the end of the data).
    """

    name = "pdf-nanoparticle-size"

    def __init__(self, structure: Structure | str | Path, r_range_angstrom: tuple[float, float] | None = None) -> None:
        self.structure = structure if isinstance(structure, Structure) else Structure.from_file(structure)
        self.r_range_angstrom = r_range_angstrom
        self._pending: list[PairDistribution] = []

    def tell(self, reading: Reading) -> None:
        if not isinstance(reading, PairDistribution):
            raise TypeError(f"{self.name} analyses pair distributions, not {type(reading).__name__}")
        self._pending.append(reading)

    def report(self) -> list[AnalysisReport]:
        pending, self._pending = self._pending, []
        return [self.analyse(pdf) for pdf in pending]

    def analyse(self, reading: Reading) -> AnalysisReport:
        """Analyse one pair distribution function now."""
        if not isinstance(reading, PairDistribution):
            raise TypeError(f"{self.name} analyses pair distributions, not {type(reading).__name__}")
        fit = fit_nanoparticle(reading, self.structure, self.r_range_angstrom)
        return AnalysisReport(self.name, reading.sample_id, fit.quantities())


ANALYSES = ("fit", "network", "identify")


def analyse_file(
    path: str | Path,
    analysis: str = "fit",
    radiation: str | None = None,
    phases: Sequence[str | Path | Structure] = ("anatase", "rutile"),
    model: str | Path = "tio2_calcination",
    instrument: str | Path | None = None,
) -> AnalysisReport:
    """Read a pattern file (.xy/.xye/.csv/.xrdml) and analyse it: what ``crucible analyse FILE`` does.

    Args:
        path: the pattern file.
        analysis: ``"fit"`` (whole-pattern fit of ``phases``), ``"network"`` (the trained ensemble ``model``) or
            ``"identify"`` (rank ``phases`` as a library, with open-set rejection).
        radiation: overrides the file's radiation (``Cu``, ``Cu-Ka1``, ``1.5406`` or ``λ1,λ2[,ratio]``).
        phases: reference phases: built-in names, CIF paths or pymatgen structures.
        model: a shipped ensemble name or a model-card path.
        instrument: the diffractometer's instrument profile for the fit: a JSON file or a shipped name (``aeris``);
            see :mod:`analysis.instrument_profile`.

    Raises:
        analysis.readers.PatternFileError: for an unreadable file or an unknown radiation.
        ValueError: for an unknown analysis.
    """
    pattern = read_pattern(path, radiation, min_points=MIN_POINTS_TO_ANALYSE)
    profile = InstrumentProfile.load(instrument) if instrument is not None else None
    if analysis == "fit":
        return XRDPhaseAgent(list(phases), instrument=profile).analyse(pattern)
    if analysis == "network":
        return XRDNetworkAgent(model).analyse(pattern)
    if analysis == "identify":
        return PhaseIdentificationAgent(list(phases), instrument=profile).analyse(pattern)
    raise ValueError(f"unknown analysis {analysis!r}; choose one of {', '.join(ANALYSES)}")
