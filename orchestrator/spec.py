"""The campaign file: what may be varied, what is wanted, with what budget, on which instruments.

A campaign file is YAML validated by the pydantic models below. Unknown keys are rejected, so a misspelt field is
an error that names it, raised before any instrument is touched (:func:`load_campaign`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "BudgetSpec",
    "CampaignFileError",
    "CampaignSpec",
    "ConstraintSpec",
    "CostSpec",
    "FaultsSpec",
    "InstrumentSpec",
    "MeasurementSpec",
    "ObjectiveSpec",
    "ParameterSpec",
    "PlannerSettings",
    "SCAN_KEY",
    "ScanSpec",
    "SimulationSpec",
    "XRDAnalysisSpec",
    "load_campaign",
    "parse_campaign",
]


class CampaignFileError(ValueError):
    """A campaign file that cannot be used; the message names the file, the field and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParameterSpec(_Strict):
    """One synthesis condition the planner may vary, e.g. an annealing temperature in degC."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    low: float | None = None
    high: float | None = None
    unit: str = ""
    kind: Literal["continuous", "integer", "categorical"] = "continuous"
    log_scale: bool = False
    choices: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _check_bounds(self) -> ParameterSpec:
        if self.kind == "categorical":
            if not self.choices or len(self.choices) < 2:
                raise ValueError(f"categorical parameter {self.name!r} needs at least two choices")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"parameter {self.name!r} needs both low and high bounds")
        if self.low >= self.high:
            raise ValueError(
                f"parameter {self.name!r}: lower bound {self.low:g} is not below upper bound {self.high:g}"
            )
        if self.log_scale and self.low <= 0:
            raise ValueError(f"log-scaled parameter {self.name!r} needs a positive lower bound")
        return self


class ObjectiveSpec(_Strict):
    """A measured quantity to maximise, minimise or bring to a target value."""

    name: str
    direction: Literal["maximize", "minimize", "target"] = "maximize"
    target: float | None = None
    reference: float | None = None  # several objectives: the worst value still worth anything (hypervolume)

    @model_validator(mode="after")
    def _check_target(self) -> ObjectiveSpec:
        if (self.direction == "target") != (self.target is not None):
            raise ValueError(f"objective {self.name!r}: give `target` exactly when direction is 'target'")
        return self


class ConstraintSpec(_Strict):
    """An outcome constraint, e.g. ``rutile_fraction <= 0.1`` (phase purity)."""

    name: str
    op: Literal["<=", ">="]
    value: float


class BudgetSpec(_Strict):
    """How many experiments the campaign may run, how many are proposed at once, and how many may be under way.

    ``max_in_flight`` bounds the experiments planned but not yet analysed (or failed): once it is reached, a free
    synthesiser waits for an analysis, so every proposal after the initial design is made by a model that has seen
    all but at most ``max_in_flight - 1`` of the earlier experiments. Default: the number of synthesisers (one
    sample per synthesiser ahead of the analysis), or the batch size if that is larger.
    """

    experiments: Annotated[int, Field(ge=1, le=100_000)]
    batch_size: Annotated[int, Field(ge=1, le=64)] = 1
    max_in_flight: Annotated[int | None, Field(ge=1, le=1000)] = None

    @model_validator(mode="after")
    def _batch_fits_in_flight(self) -> BudgetSpec:
        if self.max_in_flight is not None and self.max_in_flight < self.batch_size:
            raise ValueError(
                f"max_in_flight ({self.max_in_flight}) is below batch_size ({self.batch_size}): "
                "a batch could never be under way whole"
            )
        return self


class ParameterConstraintSpec(_Strict):
    """A linear constraint on continuous parameters, e.g. fractions that sum to one:
    ``{coefficients: {x_Fe: 1, x_Co: 1, x_Ni: 1}, op: "==", value: 1}``."""

    coefficients: Annotated[dict[str, float], Field(min_length=1)]
    op: Literal["<=", ">=", "=="]
    value: float


class CostSpec(_Strict):
    """What an experiment costs as a function of its conditions (e.g. anneal hours), so the planner weighs
    expected improvement per unit cost: ``fixed + sum per_unit[p] * p + sum per_choice[p][choice]``."""

    fixed: Annotated[float, Field(ge=0)] = 0.0
    per_unit: dict[str, Annotated[float, Field(ge=0)]] = {}
    per_choice: dict[str, dict[str, Annotated[float, Field(ge=0)]]] = {}
    alpha: Annotated[float, Field(gt=0)] = 1.0

    @model_validator(mode="after")
    def _something_costs(self) -> CostSpec:
        if self.fixed <= 0 and not self.per_unit and not self.per_choice:
            raise ValueError("give a positive fixed cost or per_unit / per_choice terms")
        return self


class PlannerSettings(_Strict):
    """Which planner proposes experiments, and how.

    ``name`` is ``botorch``, ``sobol``, ``random`` or the import path ``package.module:Class`` of any planner that
    follows the `agents.planner.Planner` protocol (an Ax or BayBE wrapper, a user's own). ``mode: explore``
    maps the response surface (maximises information, not a value). ``candidates``: only these conditions can be
    made (a CSV file with one column per parameter, or an inline list); each is picked at most once unless
    ``allow_repeats``. ``fixed``: values every proposal uses (today's precursor batch). ``cost``: what an
    experiment costs as a function of its conditions (``botorch`` only).
    """

    name: Annotated[str, Field(pattern=r"^(botorch|sobol|random|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$")] = "botorch"
    initial_experiments: Annotated[int, Field(ge=1)] = 5
    raw_samples: Annotated[int, Field(ge=8)] = 256
    num_restarts: Annotated[int, Field(ge=1)] = 8
    mode: Literal["optimize", "explore"] = "optimize"
    candidates: list[dict[str, float | str]] | None = None
    allow_repeats: bool = False
    fixed: dict[str, float | str] = {}
    cost: CostSpec | None = None

    @field_validator("candidates", mode="before")
    @classmethod
    def _read_candidates_file(cls, value: Any) -> Any:
        return read_candidates(value) if isinstance(value, str) else value


class InstrumentSpec(_Strict):
    """Where an instrument listens (a ZeroMQ endpoint) and how long to wait for it."""

    kind: Literal["synthesiser", "diffractometer", "saxs", "pdf", "xas"]
    address: Annotated[str, Field(pattern=r"^(tcp|ipc|inproc)://\S+$")]
    timeout_s: Annotated[float, Field(gt=0)] = 5.0
    run_timeout_s: Annotated[float, Field(gt=0)] = 3600.0
    server_key: str | None = None  # the instrument's CurveZMQ public key file (`crucible keys`); required off-host


class ScanSpec(_Strict):
    """One way to measure a sample: a counting time per step and what a scan costs (by default its counting
    time, the instrument time it takes; any unit shared by the campaign's scans)."""

    counting_time_s: Annotated[float, Field(gt=0)]
    cost: Annotated[float, Field(gt=0)] | None = None

    @property
    def scan_cost(self) -> float:
        return self.cost if self.cost is not None else self.counting_time_s


class MeasurementSpec(_Strict):
    """How each sample is measured: one counting time, or ``scans`` for the planner to choose from.

    With ``scans`` (two or more, e.g. a quick low-count scan and a long high-count one) the planner picks, for
    every experiment, the scan with the largest expected information per unit cost (measurement fidelities);
    the choice is recorded in the experiment's conditions under ``scan``.
    """

    counting_time_s: Annotated[float, Field(gt=0)] = 1.0
    scans: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], ScanSpec] | None = None

    @field_validator("scans")
    @classmethod
    def _at_least_two(cls, scans: dict[str, ScanSpec] | None) -> dict[str, ScanSpec] | None:
        if scans is not None and len(scans) < 2:
            raise ValueError("give two or more scans to choose from, or just counting_time_s")
        return scans

    def counting_time_for(self, scan: str | None) -> float:
        """Counting time per step of ``scan`` (a name from ``scans``), or the single ``counting_time_s``."""
        if self.scans is None:
            return self.counting_time_s
        if scan not in self.scans:
            raise KeyError(f"scan {scan!r} is not one of {sorted(self.scans)}")
        return self.scans[scan].counting_time_s


#: The key under which a chosen scan is recorded in an experiment's conditions.
SCAN_KEY = "scan"


class XRDAnalysisSpec(_Strict):
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

    @model_validator(mode="after")
    def _network_has_a_model(self) -> XRDAnalysisSpec:
        if self.method == "network" and not self.model:
            raise ValueError("method 'network' needs a model: a shipped name (tio2_calcination) or a model-card path")
        return self


class AnalysisSpec(_Strict):
    xrd: XRDAnalysisSpec


Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class FaultsSpec(_Strict):
    """Faults the simulated instruments inject on demand, each with a probability per run."""

    timeout_probability: Probability = 0.0  # the run hangs for hang_s, then fails
    death_probability: Probability = 0.0  # the instrument's server process dies mid-run (and is restarted)
    error_probability: Probability = 0.0  # the instrument replies with an error
    corruption_probability: Probability = 0.0  # the reading comes back corrupted
    truncation_probability: Probability = 0.0  # the reading comes back cut short
    drift_probability: Probability = 0.0  # the diffractometer's zero shift steps by drift_step_deg
    drift_step_deg: Annotated[float, Field(ge=0)] = 0.01
    hang_s: Annotated[float, Field(gt=0)] = 30.0

    @property
    def enabled(self) -> bool:
        return any(value > 0 for name, value in self.model_dump().items() if name.endswith("_probability"))


class SimulationSpec(_Strict):
    """The simulated lab that stands in for hardware with ``crucible run --sim``."""

    scenario: str
    seed: int = 0
    time_factor: Annotated[float, Field(ge=0)] = 0.0
    faults: FaultsSpec = FaultsSpec()


class CampaignSpec(_Strict):
    """A whole campaign file."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    description: str = ""
    seed: int = 0
    budget: BudgetSpec
    parameters: Annotated[list[ParameterSpec], Field(min_length=1)]
    objectives: Annotated[list[ObjectiveSpec], Field(min_length=1)]
    constraints: list[ConstraintSpec] = []
    parameter_constraints: list[ParameterConstraintSpec] = []
    planner: PlannerSettings = PlannerSettings()
    require_approval: bool = False  # an operator approves each planned experiment before any instrument runs it
    client_key: str | None = None  # this orchestrator's CurveZMQ secret key file, for instruments with server_key
    instruments: dict[str, InstrumentSpec]
    measurement: MeasurementSpec = MeasurementSpec()
    analysis: AnalysisSpec
    simulation: SimulationSpec | None = None

    @field_validator("parameters")
    @classmethod
    def _unique_parameters(cls, parameters: list[ParameterSpec]) -> list[ParameterSpec]:
        names = [p.name for p in parameters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"parameter names must be unique; repeated: {', '.join(duplicates)}")
        return parameters

    @model_validator(mode="after")
    def _check_cross_references(self) -> CampaignSpec:
        kinds = {spec.kind for spec in self.instruments.values()}
        for needed in ("synthesiser", "diffractometer"):
            if needed not in kinds:
                raise ValueError(f"instruments: no instrument of kind {needed!r}")
        keyed = [name for name, spec in self.instruments.items() if spec.server_key]
        if keyed and not self.client_key:
            raise ValueError(f"instruments {', '.join(keyed)} have a server_key: give client_key (a .key_secret file)")
        addresses = [spec.address for spec in self.instruments.values()]
        if len(set(addresses)) != len(addresses):
            raise ValueError("instruments: two instruments share one address")
        known = set(self.measured_quantities())
        for item in [*self.objectives, *self.constraints]:
            if item.name not in known:
                raise ValueError(
                    f"{item.name!r} is not a quantity the analysis reports; known: {', '.join(sorted(known))}"
                )
        by_name = {p.name: p for p in self.parameters}
        for i, linear in enumerate(self.parameter_constraints):
            for name in linear.coefficients:
                if name not in by_name or by_name[name].kind != "continuous":
                    raise ValueError(f"parameter_constraints.{i}: {name!r} is not a continuous parameter")
        for i, candidate in enumerate(self.planner.candidates or []):
            _check_candidate(i, candidate, by_name)
        for name, value in self.planner.fixed.items():
            if name not in by_name:
                raise ValueError(f"planner.fixed: {name!r} is not a parameter")
            _check_value("planner.fixed", name, value, by_name[name])
        if self.planner.cost is not None:
            _check_cost(self.planner.cost, by_name)
        botorch_only = [
            field
            for field, given in (("planner.cost", self.planner.cost), ("measurement.scans", self.measurement.scans))
            if given is not None
        ]
        if botorch_only and self.planner.name != "botorch":
            raise ValueError(f"{' and '.join(botorch_only)} need planner 'botorch', not {self.planner.name!r}")
        if self.measurement.scans is not None and SCAN_KEY in by_name:
            raise ValueError(f"measurement.scans records its choice as {SCAN_KEY!r}, which is also a parameter name")
        return self

    def weight_fractions(self) -> list[str]:
        """Names of the phase weight fractions the configured analysis reports (quantities in ``[0, 1]``)."""
        return [f"{_phase_label(phase)}_fraction" for phase in self.analysis.xrd.phases]

    def measured_quantities(self) -> list[str]:
        """Names of the quantities the configured analysis reports (the allowed objectives)."""
        names: list[str] = []
        for phase in self.analysis.xrd.phases:
            label = _phase_label(phase)
            names += [
                f"{label}_fraction",
                f"{label}_crystallite_size_nm",
                f"{label}_a_angstrom",
                f"{label}_b_angstrom",
                f"{label}_c_angstrom",
            ]
        return names + (["rwp"] if self.analysis.xrd.method == "fit" else [])

    def max_in_flight(self) -> int:
        """The bound on experiments planned but not yet analysed: the file's, else one per synthesiser (at least
        one batch)."""
        if self.budget.max_in_flight is not None:
            return self.budget.max_in_flight
        synthesisers = sum(spec.kind == "synthesiser" for spec in self.instruments.values())
        return max(synthesisers, self.budget.batch_size, 1)

    def instrument_of_kind(self, kind: str) -> tuple[str, InstrumentSpec]:
        """The first instrument of ``kind`` as ``(name, spec)``."""
        for name, spec in self.instruments.items():
            if spec.kind == kind:
                return name, spec
        raise KeyError(f"no instrument of kind {kind!r}")


def _phase_label(phase: str) -> str:
    """The name a phase's quantities carry: a built-in phase's own name, or a CIF file's stem."""
    return Path(phase).stem if phase.endswith(".cif") else phase


def _describe_error(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "<top level>"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown field {location!r} (misspelt?)"
    if kind == "missing":
        return f"missing required field {location!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{location}: {message}"


def _check_cost(cost: CostSpec, parameters: dict[str, ParameterSpec]) -> None:
    for name in cost.per_unit:
        if name not in parameters or parameters[name].kind == "categorical":
            raise ValueError(f"planner.cost.per_unit: {name!r} is not a continuous or integer parameter")
    for name, prices in cost.per_choice.items():
        p = parameters.get(name)
        if p is None or p.kind != "categorical":
            raise ValueError(f"planner.cost.per_choice: {name!r} is not a categorical parameter")
        missing = sorted(set(p.choices or ()) - set(prices))
        unknown = sorted(set(prices) - set(p.choices or ()))
        if missing or unknown:
            raise ValueError(f"planner.cost.per_choice.{name}: missing choices {missing} / unknown {unknown}")
    cheapest = cost.fixed
    cheapest += sum(rate * (parameters[name].low or 0.0) for name, rate in cost.per_unit.items())
    cheapest += sum(min(prices.values()) for prices in cost.per_choice.values())
    if cheapest <= 0:
        raise ValueError("planner.cost: the cheapest experiment would cost nothing; give a positive fixed cost")


def _check_candidate(index: int, candidate: dict[str, float | str], parameters: dict[str, ParameterSpec]) -> None:
    where = f"planner.candidates.{index}"
    missing = sorted(set(parameters) - set(candidate))
    unknown = sorted(set(candidate) - set(parameters))
    if missing or unknown:
        raise ValueError(f"{where}: missing {missing} / unknown {unknown} parameters")
    for name, value in candidate.items():
        _check_value(where, name, value, parameters[name])


def _check_value(where: str, name: str, value: float | str, p: ParameterSpec) -> None:
    if p.kind == "categorical":
        if str(value) not in (p.choices or ()):
            raise ValueError(f"{where}: {name} = {value!r} is not one of {list(p.choices or ())}")
    elif isinstance(value, str) or not (p.low <= value <= p.high):  # type: ignore[operator]
        raise ValueError(f"{where}: {name} = {value!r} is outside [{p.low:g}, {p.high:g}]")


def read_candidates(path: str | Path) -> list[dict[str, float | str]]:
    """Candidate conditions from a CSV file: a header row of parameter names, one candidate per row."""
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise ValueError(f"cannot read candidates file {path} ({error.strerror})") from None
    except csv.Error as error:
        raise ValueError(f"candidates file {path} is not valid CSV ({error})") from None
    if not rows:
        raise ValueError(f"candidates file {path} has no rows")

    def cell(text: str | None, line: int, column: str) -> float | str:
        if text is None or text.strip() == "":
            raise ValueError(f"candidates file {path}, line {line}: no value for {column!r}")
        try:
            return float(text)
        except ValueError:
            return text.strip()

    return [{k: cell(v, i + 2, k) for k, v in row.items()} for i, row in enumerate(rows)]


def parse_campaign(data: Any, source: str = "<campaign>") -> CampaignSpec:
    """Validate an already-loaded campaign mapping; raise :class:`CampaignFileError` naming every problem."""
    if not isinstance(data, dict):
        raise CampaignFileError(f"{source}: a campaign file must be a YAML mapping, got {type(data).__name__}")
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_describe_error(e) for e in error.errors())
        raise CampaignFileError(f"{source}: {problems}") from None


def load_campaign(path: str | Path) -> CampaignSpec:
    """Read and validate a campaign YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise CampaignFileError(f"{path}: cannot read campaign file ({error.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CampaignFileError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    planner = data.get("planner") if isinstance(data, dict) else None
    if isinstance(planner, dict) and isinstance(planner.get("candidates"), str):
        planner["candidates"] = str(path.parent / planner["candidates"])  # relative to the campaign file
    return parse_campaign(data, str(path))
