"""Crucible's own analyses for workflow steps: powder XRD phases, SAXS shape and size, PDF particle size, XANES
oxidation states.

Each is an :class:`agents.analyses.AnalysisKind` with the options a campaign file gives it. The agents' modules
(pymatgen, torch, scipy) are imported only when an agent is built, so reading a campaign file stays quick.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agents.analyses import AnalysisKind, Quantity

__all__ = [
    "BUILTIN",
    "PDFSizeOptions",
    "SAXSShapeOptions",
    "XRDAnalysisSpec",
    "builtin_phases",
    "default_workflow",
    "phase_label",
]

#: A CIF file of a reference phase is a few kB to a few hundred kB.
MAX_CIF_FILE_BYTES = 10_000_000


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def builtin_phases() -> list[str]:
    """Names of the built-in reference phases (the CIF files of ``analysis/phase_library``), without importing
    the analysis (and pymatgen)."""
    import analysis

    return sorted(path.stem for path in (Path(analysis.__file__).parent / "phase_library").glob("*.cif"))


def _is_cif(phase: str) -> bool:
    return phase.lower().endswith(".cif")


def phase_label(phase: str) -> str:
    """The name a phase's quantities carry: a built-in phase's own name, or a CIF file's stem."""
    return Path(phase).stem if _is_cif(phase) else phase


def _check_phase_names(phases: list[str]) -> list[str]:
    known = builtin_phases()
    for i, phase in enumerate(phases):
        if not phase.strip():
            raise ValueError(f"entry {i} is an empty phase name")
        if not _is_cif(phase) and phase not in known:
            raise ValueError(f"unknown phase {phase!r}: not a built-in phase ({', '.join(known)}) and not a .cif file")
    labels = [phase_label(phase) for phase in phases]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"phase {', '.join(repeated)} is given twice")
    return phases


def cif_problem(path: Path) -> str | None:
    """What is wrong with a reference phase's CIF file, or None."""
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a file"
    if path.stat().st_size > MAX_CIF_FILE_BYTES:
        return f"too large for a CIF file (more than {MAX_CIF_FILE_BYTES // 1_000_000} MB)"
    from pymatgen.core import Structure

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns about every oddity of a CIF it still reads
            structure = Structure.from_file(path)
    except Exception as error:  # pymatgen raises many kinds for a CIF it cannot read
        reason = " ".join(str(error).split()) or type(error).__name__
        return f"cannot be read as a crystal structure ({reason[:200]})"
    if len(structure) == 0:
        return "has no atoms"
    return None


# --- powder XRD --------------------------------------------------------------------------------------------------
class XRDAnalysisSpec(_Options):
    """Phase quantification of powder XRD against reference phases (built-in names or CIF paths).

    ``method: fit`` (the default) refines every pattern against ``phases`` by whole-pattern least squares;
    ``method: network`` runs the trained deep ensemble ``model`` (a shipped name such as ``tio2_calcination`` or a
    model-card path), thousands of times faster, whose phases must be ``phases``. Either way every quantity
    comes with a standard deviation, which the planner takes as its observation noise.
    """

    phases: Annotated[list[str], Field(min_length=1)]
    method: Literal["fit", "network"] = "fit"
    model: str | None = None
    caglioti_uvw_deg2: tuple[float, float, float] = (0.004, -0.002, 0.002)
    background_terms: Annotated[int, Field(ge=1, le=12)] = 6
    # for phase mapping: a phase counts as present from this weight fraction on, and the quantities gain
    # ``region`` (the set of phases present, as the bitmask sum of 2**i over present phases i in ``phases`` order)
    # and ``n_phases``
    presence_threshold: Annotated[float, Field(gt=0, lt=1)] | None = None

    @field_validator("phases")
    @classmethod
    def _known_phases(cls, phases: list[str]) -> list[str]:
        """Built-in names must be in the phase library (CIF files are checked by the resource check), and no
        phase may be given twice: checked here, so an unknown phase is named as such."""
        return _check_phase_names(phases)

    @model_validator(mode="after")
    def _network_has_a_model(self) -> XRDAnalysisSpec:
        if self.method == "network" and not self.model:
            raise ValueError("method 'network' needs a model: a shipped name (tio2_calcination) or a model-card path")
        return self


def _xrd_quantities(options: XRDAnalysisSpec) -> list[Quantity]:
    quantities: list[Quantity] = []
    for phase in options.phases:
        label = phase_label(phase)
        quantities += [
            Quantity(f"{label}_fraction", "weight fraction", share=True),
            Quantity(f"{label}_crystallite_size_nm", "nm"),
            Quantity(f"{label}_a_angstrom", "Å"),
            Quantity(f"{label}_b_angstrom", "Å"),
            Quantity(f"{label}_c_angstrom", "Å"),
        ]
    if options.presence_threshold is not None:
        quantities += [Quantity("region"), Quantity("n_phases")]
    return quantities + ([Quantity("rwp")] if options.method == "fit" else [])


class _PhaseMapAgent:
    """An XRD agent whose report also says which phases are present (``region``, ``n_phases``)."""

    def __init__(self, agent: Any, labels: list[str], threshold: float) -> None:
        self.agent, self.labels, self.threshold = agent, labels, threshold
        self.name = agent.name

    def analyse(self, reading: Any) -> Any:
        from dataclasses import replace

        from analysis.phase_quantification import Measurement

        report = self.agent.analyse(reading)
        present = [
            i for i, label in enumerate(self.labels)
            if report.quantities.get(f"{label}_fraction", Measurement(0.0, 0.0)).value >= self.threshold
        ]
        quantities = dict(report.quantities)
        quantities["region"] = Measurement(float(sum(2**i for i in present)), 0.0)
        quantities["n_phases"] = Measurement(float(len(present)), 0.0)
        return replace(report, quantities=quantities)


def region_name(region: int, phases: list[str]) -> str:
    """The phases a ``region`` bitmask stands for, e.g. ``"periclase + ceria"``."""
    names = [phase_label(p) for i, p in enumerate(phases) if region & (1 << i)]
    return " + ".join(names) or "none"


def _xrd_resources(options: XRDAnalysisSpec) -> str | None:
    for i, phase in enumerate(options.phases):
        if _is_cif(phase):
            problem = cif_problem(Path(phase))
            if problem:
                return f"phases.{i}: phase file {phase}: {problem}"
    if options.method == "network" and options.model:
        card = Path(options.model)
        if card.suffix != ".json":
            import analysis

            card = Path(analysis.__file__).parent / "weights" / f"{options.model}.json"  # as analysis.ml.load_ensemble
        if not card.is_file():
            shipped = sorted(p.stem for p in card.parent.glob("*.json")) if card.parent.is_dir() else []
            return (
                f"model: no trained model {options.model!r}; shipped: {', '.join(shipped) or '-'}; "
                "or give a model-card .json path"
            )
    return None


def _xrd_agent(options: XRDAnalysisSpec) -> Any:
    """The whole-pattern fit or the trained network ensemble, as ``options`` ask."""
    if options.method == "fit":
        from agents.xrd_phase_agent import XRDPhaseAgent

        fit = XRDPhaseAgent(options.phases, options.caglioti_uvw_deg2, options.background_terms)
        if options.presence_threshold is None:
            return fit
        return _PhaseMapAgent(fit, [phase_label(p) for p in options.phases], options.presence_threshold)
    from agents.analysis_agents import XRDNetworkAgent

    assert options.model is not None  # the options require one
    try:
        agent = XRDNetworkAgent(options.model)
    except (FileNotFoundError, KeyError) as error:
        raise ValueError(f"model {options.model!r} cannot be loaded: {error}") from None
    wanted = sorted(phase_label(p) for p in options.phases)
    if sorted(agent.ensemble.card.phases) != wanted:
        raise ValueError(
            f"model {options.model!r} was trained on phases {sorted(agent.ensemble.card.phases)}, not {wanted}"
        )
    if options.presence_threshold is None:
        return agent
    return _PhaseMapAgent(agent, [phase_label(p) for p in options.phases], options.presence_threshold)


def _draw_xrd(reading: Any, report: Any, title: str, path: Path) -> Path | None:
    from agents.xrd_views import draw_xrd_fit

    return draw_xrd_fit(reading, report, title, path)


XRD = AnalysisKind(
    name="xrd",
    reading_kind="diffractogram",
    options=XRDAnalysisSpec,
    quantities=_xrd_quantities,
    build=_xrd_agent,
    check_resources=_xrd_resources,
    description="phase fractions, crystallite sizes and lattice parameters from a powder pattern",
    view=_draw_xrd,
)



# --- SAXS --------------------------------------------------------------------------------------------------------
_SAXS_SHAPES = ("sphere", "cylinder", "core_shell_sphere")
_SAXS_PARAMETERS = {
    "sphere": ("radius_angstrom", "radius_pd"),
    "cylinder": ("radius_angstrom", "length_angstrom", "radius_pd"),
    "core_shell_sphere": ("radius_angstrom", "thickness_angstrom", "radius_pd", "contrast_ratio"),
}
_UNITS = {"radius_pd": "relative", "contrast_ratio": ""}


class SAXSShapeOptions(_Options):
    """Which particle shapes to fit to a SAXS curve (ranked by BIC); by default all three."""

    shapes: Annotated[list[Literal["sphere", "cylinder", "core_shell_sphere"]], Field(min_length=1)] = list(
        _SAXS_SHAPES
    )


class _SAXSStepAgent:
    """:class:`agents.analysis_agents.SAXSShapeAgent` for one curve, reporting every declared quantity: the
    parameters of shapes other than the best one are NaN, and ``shape_index`` is the best shape's position in
    ``shapes``."""

    name = "saxs-shape"

    def __init__(self, options: SAXSShapeOptions) -> None:
        self.options = options

    def analyse(self, reading: Any) -> Any:
        from agents.analysis_agents import SAXSShapeAgent
        from agents.xrd_phase_agent import AnalysisReport
        from analysis.phase_quantification import Measurement

        agent = SAXSShapeAgent(self.options.shapes)
        report = agent.analyse(reading)
        assert agent.last_analysis is not None
        quantities = {q.name: Measurement(math.nan, math.nan) for q in _saxs_quantities(self.options)}
        quantities.update(report.quantities)
        radius = quantities["radius_angstrom"]
        quantities["radius_nm"] = Measurement(radius.value / 10.0, radius.std / 10.0)
        best = agent.last_analysis.best.shape
        quantities["shape_index"] = Measurement(float(self.options.shapes.index(best)), 0.0)
        return AnalysisReport(self.name, reading.sample_id, quantities)


def _saxs_quantities(options: SAXSShapeOptions) -> list[Quantity]:
    quantities = [Quantity(f"shape_{shape}_probability", "probability", share=True) for shape in options.shapes]
    names: list[str] = []
    for shape in options.shapes:
        names += [n for n in _SAXS_PARAMETERS[shape] if n not in names]
    quantities += [Quantity(n, _UNITS.get(n, "Å")) for n in names]
    return quantities + [Quantity("radius_nm", "nm"), Quantity("shape_index"), Quantity("reduced_chi2")]


SAXS_SHAPE = AnalysisKind(
    name="saxs-shape",
    reading_kind="scattering_curve",
    options=SAXSShapeOptions,
    quantities=_saxs_quantities,
    build=_SAXSStepAgent,
    description="particle shape, radius and polydispersity from a SAXS curve",
)


# --- PDF ---------------------------------------------------------------------------------------------------------
class PDFSizeOptions(_Options):
    """The particles' crystal structure (a built-in phase or a CIF path) and the fitted r range in Å."""

    structure: str
    r_range_angstrom: tuple[float, float] | None = None

    @field_validator("structure")
    @classmethod
    def _known_structure(cls, structure: str) -> str:
        return _check_phase_names([structure])[0]


def _pdf_agent(options: PDFSizeOptions) -> Any:
    from agents.analysis_agents import PDFSizeAgent

    path = Path(options.structure)
    if not _is_cif(options.structure):
        import analysis

        path = Path(analysis.__file__).parent / "phase_library" / f"{options.structure}.cif"
    return PDFSizeAgent(path, options.r_range_angstrom)


def _pdf_resources(options: PDFSizeOptions) -> str | None:
    if _is_cif(options.structure):
        problem = cif_problem(Path(options.structure))
        return f"structure: phase file {options.structure}: {problem}" if problem else None
    return None


PDF_SIZE = AnalysisKind(
    name="pdf-size",
    reading_kind="pair_distribution",
    options=PDFSizeOptions,
    quantities=lambda options: [
        Quantity("particle_diameter_nm", "nm"),
        Quantity("pdf_scale"),
        Quantity("pdf_sigma_angstrom", "Å"),
    ],
    build=_pdf_agent,
    check_resources=_pdf_resources,
    description="nanoparticle diameter from a pair distribution function",
)


# --- XANES -------------------------------------------------------------------------------------------------------
class XanesLCFOptions(_Options):
    """The standards to combine: a shipped edge (``Ce_L3``, ``Ni_K``) or a JSON file of a lab's own standards (see
    :func:`analysis.xanes_lcf.load_standards`), and the largest energy shift to allow, eV."""

    standards: str
    max_shift_ev: Annotated[float, Field(gt=0, le=20)] = 3.0

    @field_validator("standards")
    @classmethod
    def _known_standards(cls, standards: str) -> str:
        if not standards.endswith(".json") and not _standards_path(standards).is_file():
            import analysis

            shipped = sorted(p.stem for p in (Path(analysis.__file__).parent / "xanes_standards").glob("*.json"))
            raise ValueError(f"no shipped XANES standards {standards!r}; shipped: {', '.join(shipped)} (or a .json)")
        return standards


def _standards_path(standards: str) -> Path:
    if standards.endswith(".json"):
        return Path(standards)
    import analysis

    return Path(analysis.__file__).parent / "xanes_standards" / f"{standards}.json"


def _xanes_states(options: XanesLCFOptions) -> list[str]:
    """The standards' state labels, read without importing the analysis."""
    import json

    try:
        return list(json.loads(_standards_path(options.standards).read_text(encoding="utf-8"))["states"])
    except (OSError, ValueError, KeyError, TypeError):
        return []  # named by the resource check


def _xanes_quantities(options: XanesLCFOptions) -> list[Quantity]:
    quantities = [Quantity(f"{label}_fraction", "fraction of absorber", share=True) for label in _xanes_states(options)]
    return quantities + [Quantity("energy_shift_ev", "eV"), Quantity("lcf_weight_sum"), Quantity("lcf_r_factor")]


def _xanes_resources(options: XanesLCFOptions) -> str | None:
    from analysis.xanes_lcf import load_standards

    try:
        load_standards(_standards_path(options.standards))
    except ValueError as error:
        return f"standards: {error}"
    return None


class _XanesAgent:
    """Oxidation-state fractions by linear combination of the standards (:func:`analysis.xanes_lcf.fit_xanes_lcf`)."""

    name = "xanes-lcf"

    def __init__(self, options: XanesLCFOptions) -> None:
        from analysis.xanes_lcf import load_standards

        self.standards = load_standards(_standards_path(options.standards))
        self.max_shift_ev = options.max_shift_ev

    def analyse(self, reading: Any) -> Any:
        from agents.xrd_phase_agent import AnalysisReport
        from analysis.xanes_lcf import fit_xanes_lcf
        from instruments.readings import Spectrum

        if not isinstance(reading, Spectrum):
            raise TypeError(f"{self.name} analyses spectra, not {type(reading).__name__}")
        fit = fit_xanes_lcf(reading, self.standards, self.max_shift_ev)
        return AnalysisReport(self.name, reading.sample_id, fit.quantities())


XANES_LCF = AnalysisKind(
    name="xanes-lcf",
    reading_kind="spectrum",
    options=XanesLCFOptions,
    quantities=_xanes_quantities,
    build=_XanesAgent,
    check_resources=_xanes_resources,
    description="oxidation-state fractions from a XANES spectrum, by linear combination of measured standards",
)


BUILTIN: tuple[AnalysisKind, ...] = (XRD, SAXS_SHAPE, PDF_SIZE, XANES_LCF)


def default_workflow(analysis: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The workflow of a campaign file without ``workflow:``, from its ``analysis: {xrd: {...}}`` section: make the
    sample on a synthesiser, measure it on a diffractometer (the file's ``measurement`` sets the counting time),
    analyse it as ``analysis.xrd`` says. Returns the steps and where each step's analysis options sit in the file.

    Campaign files from before workflows were data keep working unchanged; their quantities are those of step
    ``xrd`` (``xrd.anatase_fraction``, or ``anatase_fraction`` where no other step reports that name).

    Raises:
        ValueError: naming an unknown or missing field of the section.
    """
    unknown = sorted(set(analysis) - {"xrd"})
    if unknown:
        raise ValueError(f"unknown field 'analysis.{unknown[0]}' (misspelt?); only 'analysis.xrd' is known")
    if "xrd" not in analysis:
        raise ValueError("missing required field 'analysis.xrd'")
    if not isinstance(analysis["xrd"], dict):
        raise ValueError("analysis.xrd: must be a mapping (key: value lines)")
    steps = [
        {"name": "synthesis", "kind": "synthesiser", "conditions": True},
        {"name": "xrd", "kind": "diffractometer", "scan": True,
         "analysis": {"agent": "xrd", "options": analysis["xrd"]}},
    ]
    return steps, ["synthesis", "analysis.xrd"]
