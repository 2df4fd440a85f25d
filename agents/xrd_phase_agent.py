"""An analysis agent that turns powder diffractograms into phase fractions, sizes and lattices.

Agents share one small interface: ``tell`` them readings, ask them to ``report`` quantities with uncertainties.
This one wraps :func:`analysis.phase_quantification.quantify_phases`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pymatgen.core import Structure

from analysis.instrument_profile import InstrumentProfile
from analysis.phase_quantification import FitOptions, Measurement, PhaseQuantification, quantify_phases, radiation_of
from analysis.powder_model import Radiation, ReferencePhase, load_reference_phase
from instruments.readings import Diffractogram, Reading

__all__ = ["AnalysisReport", "XRDPhaseAgent"]


@dataclass(frozen=True)
class AnalysisReport:
    """What an analysis agent concluded about one reading."""

    agent: str
    sample_id: str | None
    quantities: dict[str, Measurement]
    details: PhaseQuantification | None = None
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {name: {"value": m.value, "std": m.std} for name, m in self.quantities.items()}


class XRDPhaseAgent:
    """Quantitative phase analysis of powder XRD against a list of reference phases.

    Args:
        phases: built-in phase names (``"anatase"``), CIF paths or pymatgen structures.
        caglioti_uvw_deg2: the diffractometer's instrumental resolution U, V, W in deg² (ignored with ``instrument``).
        background_terms: number of Chebyshev background terms.
        instrument: the diffractometer's instrument profile (widths, asymmetry, Kβ leak); see
            :mod:`analysis.instrument_profile`.
        options: the fit's physics (see :class:`analysis.phase_quantification.FitOptions`).
    """

    name = "xrd-phase-quantification"

    def __init__(
        self,
        phases: Sequence[str | Path | Structure],
        caglioti_uvw_deg2: tuple[float, float, float] = (0.004, -0.002, 0.002),
        background_terms: int = 6,
        instrument: InstrumentProfile | None = None,
        options: FitOptions | None = None,
    ) -> None:
        if not phases:
            raise ValueError("XRDPhaseAgent needs at least one reference phase")
        self.phases = list(phases)
        self.instrument = instrument
        self.caglioti_uvw_deg2 = instrument.caglioti_uvw_deg2 if instrument is not None else caglioti_uvw_deg2
        self.background_terms = background_terms
        self.options = options
        if instrument is not None and options is None:
            self.options = FitOptions(
                asymmetry=instrument.asymmetry, fraction_model_error=instrument.fraction_model_error
            )
        self._references: dict[tuple[Radiation, float], list[ReferencePhase]] = {}
        self._pending: list[Diffractogram] = []

    def references_for(self, radiation: Radiation, two_theta_max_deg: float) -> list[ReferencePhase]:
        """Reference phases with reflection lists for this radiation (built once, then reused)."""
        key = (radiation, round(two_theta_max_deg, 1))
        if key not in self._references:
            self._references[key] = [load_reference_phase(phase, radiation, two_theta_max_deg) for phase in self.phases]
        return self._references[key]

    def tell(self, reading: Reading) -> None:
        """Queue a reading for analysis; only diffractograms are accepted."""
        if not isinstance(reading, Diffractogram):
            raise TypeError(f"{self.name} analyses diffractograms, not {type(reading).__name__}")
        self._pending.append(reading)

    def report(self) -> list[AnalysisReport]:
        """Analyse every reading told since the last report."""
        pending, self._pending = self._pending, []
        return [self.analyse(reading) for reading in pending]

    def analyse(self, reading: Diffractogram) -> AnalysisReport:
        """Analyse one diffractogram now."""
        radiation = radiation_of(reading)
        if self.instrument is not None:
            radiation = self.instrument.radiation_for(radiation)
        references = self.references_for(radiation, float(reading.two_theta_deg[-1]))
        result = quantify_phases(
            reading, references, self.caglioti_uvw_deg2, self.background_terms, self.options, radiation
        )
        return AnalysisReport(self.name, reading.sample_id, result.quantities(), result, result.warnings)
