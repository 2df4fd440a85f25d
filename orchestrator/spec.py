"""The campaign file: what may be varied, what is wanted, with what budget, on which instruments.

A campaign file is YAML validated by the pydantic models below. Unknown keys are rejected, so a misspelt field is
an error that names it, raised before any instrument is touched (:func:`load_campaign`). So are a key given twice,
numbers that are not finite or beyond sane limits, phases, CIF files and planner plug-ins that do not exist, and
files too large or not UTF-8: every problem is one :class:`CampaignFileError` naming the file, the field and what
is wrong.
"""

from __future__ import annotations

import csv
import importlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from agents.analyses import Quantity

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
    "StepSpec",
    "AnalysisStepSpec",
    "outcome",
    "check_resources",
    "load_campaign",
    "parse_campaign",
]

#: A campaign file is a few kB; anything larger than this is the wrong file (or /dev/zero).
MAX_CAMPAIGN_FILE_BYTES = 1_000_000
#: At most this many problems are listed in one error; the rest are counted.
MAX_PROBLEMS_SHOWN = 5
#: Longest wait for one instrument's reply (timeout_s) and for one run (run_timeout_s), in seconds.
MAX_REPLY_TIMEOUT_S = 86_400.0
MAX_RUN_TIMEOUT_S = 7 * 86_400.0
#: Seeds fit in 32 bits (numpy, torch and the simulated lab all take them).
MAX_SEED = 2**32 - 1
#: Planner settings of how the ``botorch`` planner models and chooses (:class:`PlannerSettings`); None: its default.
PLANNER_MODEL_SETTINGS = ("kernel", "acquisition", "exploration_weight", "noise_floor")


class CampaignFileError(ValueError):
    """A campaign file that cannot be used; the message names the file, the field and the problem."""


class _Strict(BaseModel):
    # allow_inf_nan=False: every float of a campaign file is finite (a NaN bound or an infinite timeout is refused).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


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
            repeated = sorted({c for c in self.choices if self.choices.count(c) > 1})
            if repeated:
                raise ValueError(f"categorical parameter {self.name!r}: choices given twice: {', '.join(repeated)}")
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
    instrument of the workflow's first step waits for an analysis, so every proposal after the initial design is
    made by a model that has seen all but at most ``max_in_flight - 1`` of the earlier experiments. Default: the
    number of instruments that may run the first step (one sample each ahead of the analysis), or the batch size
    if that is larger.
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

    How the ``botorch`` planner models and chooses (leave them out for its defaults):

    - ``kernel``: how smooth the model assumes each response to be. ``rbf`` assumes a very smooth surface;
      ``matern52`` allows a rugged one (sharp ridges, a phase boundary crossed by the conditions) and is the
      safer choice when the response changes quickly somewhere.
    - ``acquisition``: ``ei`` picks the experiment expected to improve most on the best so far; ``ucb`` picks the
      highest optimistic estimate, the predicted value plus ``exploration_weight`` standard deviations. ``ucb``
      with a weight of about 2 suits a finite pool of candidates where the good ones cluster together. One
      objective only, and not with ``cost``; outcome constraints weight its samples by their feasibility.
    - ``exploration_weight``: how many standard deviations of optimism ``ucb`` adds (above 0, at most 100;
      larger explores more). Only with ``acquisition: ucb``.
    - ``noise_floor``: the least measurement noise the model may infer, as a variance in units of the
      outcome's spread (its standardised variance; above 0, at most 1). Give a value below BoTorch's 1e-4
      (e.g. 1e-6) when an outcome is (nearly) noiseless and spans a large range, so that small differences near
      the optimum are not mistaken for noise; outcomes reported with their own uncertainty ignore it.
    """

    name: Annotated[str, Field(pattern=r"^(botorch|sobol|random|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$")] = "botorch"
    initial_experiments: Annotated[int, Field(ge=1, le=10_000)] = 5
    raw_samples: Annotated[int, Field(ge=8, le=100_000)] = 256
    num_restarts: Annotated[int, Field(ge=1, le=1_000)] = 8
    mode: Literal["optimize", "explore"] = "optimize"
    candidates: list[dict[str, float | str]] | None = None
    allow_repeats: bool = False
    fixed: dict[str, float | str] = {}
    cost: CostSpec | None = None
    kernel: Literal["rbf", "matern52"] | None = None
    acquisition: Literal["ei", "ucb"] | None = None
    exploration_weight: Annotated[float, Field(gt=0, le=100)] | None = None
    noise_floor: Annotated[float, Field(gt=0, le=1)] | None = None

    @field_validator("candidates", mode="before")
    @classmethod
    def _read_candidates_file(cls, value: Any) -> Any:
        return read_candidates(value) if isinstance(value, str) else value


class InstrumentSpec(_Strict):
    """Where an instrument listens (a ZeroMQ endpoint) and how long to wait for it."""

    kind: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")]  # what it is: synthesiser, diffractometer, ...
    address: Annotated[str, Field(pattern=r"^(tcp|ipc|inproc)://\S+$")]
    timeout_s: Annotated[float, Field(gt=0, le=MAX_REPLY_TIMEOUT_S)] = 5.0
    run_timeout_s: Annotated[float, Field(gt=0, le=MAX_RUN_TIMEOUT_S)] = 3600.0
    server_key: str | None = None  # the instrument's CurveZMQ public key file (`crucible keys`); required off-host


class ScanSpec(_Strict):
    """One way to measure a sample: a counting time per step and what a scan costs (by default its counting
    time, the instrument time it takes; any unit shared by the campaign's scans)."""

    counting_time_s: Annotated[float, Field(gt=0, le=3600)]
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

    counting_time_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
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


class AnalysisStepSpec(_Strict):
    """The analysis agent that turns a step's reading into quantities: a registered name (see
    :mod:`agents.analyses`) and the options it takes."""

    agent: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    options: dict[str, Any] = {}


StepParam = float | int | str | bool


class StepSpec(_Strict):
    """One step of a sample's workflow: a job on an instrument (any of a ``kind``, or one named ``instrument``),
    with what it is sent, and for a measurement the analysis of its reading.

    Every job is sent the experiment's ``sample_id``; ``params`` adds fixed values; ``conditions: true`` adds the
    planner's conditions (``{"conditions": {...}}``, what a synthesiser takes); ``scan: true`` adds the counting
    time of the campaign's ``measurement`` (the planner's choice of scan, if it has several).
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    kind: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")] | None = None
    instrument: str | None = None
    params: dict[str, StepParam] = {}
    conditions: bool = False
    scan: bool = False
    analysis: AnalysisStepSpec | None = None

    @model_validator(mode="after")
    def _one_target(self) -> StepSpec:
        if (self.kind is None) == (self.instrument is None):
            raise ValueError(f"step {self.name!r}: give either `kind` (any instrument of it) or `instrument` (one)")
        reserved = sorted({"sample_id", "conditions"} & set(self.params))
        if reserved:
            raise ValueError(f"step {self.name!r}: params {', '.join(reserved)} are set by the workflow, not by hand")
        return self


Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class FaultsSpec(_Strict):
    """Faults the simulated instruments inject on demand, each with a probability per run."""

    timeout_probability: Probability = 0.0  # the run hangs for hang_s, then fails
    death_probability: Probability = 0.0  # the instrument's server process dies mid-run (and is restarted)
    error_probability: Probability = 0.0  # the instrument replies with an error
    corruption_probability: Probability = 0.0  # the reading comes back corrupted
    truncation_probability: Probability = 0.0  # the reading comes back cut short
    drift_probability: Probability = 0.0  # the diffractometer's zero shift steps by drift_step_deg
    drift_step_deg: Annotated[float, Field(ge=0, le=10)] = 0.01
    hang_s: Annotated[float, Field(gt=0, le=MAX_REPLY_TIMEOUT_S)] = 30.0

    @property
    def enabled(self) -> bool:
        return any(value > 0 for name, value in self.model_dump().items() if name.endswith("_probability"))


class SimulationSpec(_Strict):
    """The simulated lab that stands in for hardware with ``crucible run --sim``."""

    scenario: str  # checked against the simulated lab's scenarios by orchestrator.simulated_lab.check_simulation
    seed: Seed = 0
    time_factor: Annotated[float, Field(ge=0, le=100)] = 0.0  # 0: instant, 1: real time
    faults: FaultsSpec = FaultsSpec()
    # which ground-truth quantity of the scenario each objective or constraint measures (for scoring against the
    # truth); by default the quantity's bare name (``xrd.anatase_fraction`` -> ``anatase_fraction``). A constraint
    # may instead name the true condition it stands for: ``{name: aspect_ratio, op: "<=", value: 1.0}``.
    truth: dict[str, str | ConstraintSpec] = {}


class CampaignSpec(_Strict):
    """A whole campaign file.

    A sample's route through the lab is ``workflow``, an ordered list of steps (:class:`StepSpec`); the quantities
    its analyses report are named ``step.quantity``, or by the bare quantity name where only one step reports it.
    A file without ``workflow`` runs the default workflow, which its ``analysis`` section configures
    (:func:`agents.builtin_analyses.default_workflow`).
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    description: str = ""
    seed: Seed = 0
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
    workflow: Annotated[list[StepSpec], Field(min_length=1)] | None = None
    analysis: dict[str, Any] | None = None  # the default workflow's analysis (files without `workflow`)
    simulation: SimulationSpec | None = None

    _steps: list[StepSpec] = PrivateAttr(default_factory=list)
    _options: list[BaseModel | None] = PrivateAttr(default_factory=list)
    _quantities: dict[str, Quantity] = PrivateAttr(default_factory=dict)
    _where: list[str] = PrivateAttr(default_factory=list)

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
        self._resolve_workflow()
        keyed = [name for name, spec in self.instruments.items() if spec.server_key]
        if keyed and not self.client_key:
            raise ValueError(f"instruments {', '.join(keyed)} have a server_key: give client_key (a .key_secret file)")
        addresses = [spec.address for spec in self.instruments.values()]
        if len(set(addresses)) != len(addresses):
            raise ValueError("instruments: two instruments share one address")
        for item in [*self.objectives, *self.constraints]:
            self.quantity_key(item.name)  # raises naming the known quantities
        names = [o.name for o in self.objectives]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"objectives: {', '.join(repeated)} given twice")
        shares = set(self.shares())
        for i, constraint in enumerate(self.constraints):
            if constraint.name in shares and not 0.0 <= constraint.value <= 1.0:
                raise ValueError(
                    f"constraints.{i}.value: {constraint.name} is a share (a weight fraction or probability), "
                    f"between 0 and 1; got {constraint.value:g}"
                )
        for i, objective in enumerate(self.objectives):
            if objective.name in shares and objective.target is not None and not 0.0 <= objective.target <= 1.0:
                raise ValueError(
                    f"objectives.{i}.target: {objective.name} is a share (a weight fraction or probability), "
                    f"between 0 and 1; got {objective.target:g}"
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
            for field, given in (
                ("planner.cost", self.planner.cost),
                ("measurement.scans", self.measurement.scans),
                *((f"planner.{name}", getattr(self.planner, name)) for name in PLANNER_MODEL_SETTINGS),
            )
            if given is not None
        ]
        if botorch_only and self.planner.name != "botorch":
            raise ValueError(f"{' and '.join(botorch_only)} need planner 'botorch', not {self.planner.name!r}")
        self._check_acquisition()
        if self.measurement.scans is not None and SCAN_KEY in by_name:
            raise ValueError(f"measurement.scans records its choice as {SCAN_KEY!r}, which is also a parameter name")
        if self.measurement.scans is not None and not any(step.scan for step in self._steps):
            raise ValueError("measurement.scans: no workflow step has `scan: true` to measure with the chosen scan")
        return self

    def _check_acquisition(self) -> None:
        """``exploration_weight`` only with ``acquisition: ucb``; ``ucb`` with one objective and no cost."""
        planner = self.planner
        if planner.exploration_weight is not None and planner.acquisition != "ucb":
            raise ValueError(
                "planner.exploration_weight: only used with `acquisition: ucb`; give that or leave the weight out"
            )
        if planner.acquisition == "ucb" and len(self.objectives) > 1:
            raise ValueError(
                f"planner.acquisition: 'ucb' takes one objective, the file has {len(self.objectives)} "
                "(several objectives use expected hypervolume improvement; leave acquisition out)"
            )
        if planner.acquisition == "ucb" and planner.cost is not None:
            raise ValueError(
                "planner.acquisition: 'ucb' cannot weigh planner.cost; use acquisition 'ei' "
                "(expected improvement per unit cost) or leave cost out"
            )

    def _resolve_workflow(self) -> None:
        """Check the workflow (or build the default one) and the analyses' options; keep the quantities."""
        from agents.analyses import analysis_kind
        from agents.builtin_analyses import default_workflow

        if self.workflow is not None and self.analysis is not None:
            raise ValueError("give the analysis in the workflow's steps, not in a separate `analysis:` section")
        if self.workflow is None:
            if self.analysis is None:
                raise ValueError("missing required field 'workflow' (or, for the default workflow, 'analysis')")
            default, where = default_workflow(self.analysis)  # raises naming what is wrong with the section
            steps = [StepSpec.model_validate(step) for step in default]
        else:
            steps = list(self.workflow)
            where = [f"workflow.{i}.analysis.options" for i in range(len(steps))]
        names = [step.name for step in steps]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"workflow: step {', '.join(repeated)} given twice; each step needs its own name")
        kinds = {spec.kind for spec in self.instruments.values()}
        options: list[BaseModel | None] = []
        quantities: dict[str, Quantity] = {}
        for i, step in enumerate(steps):
            if step.instrument is not None and step.instrument not in self.instruments:
                raise ValueError(
                    f"workflow.{i}.instrument: no instrument named {step.instrument!r}; "
                    f"known: {', '.join(self.instruments)}"
                )
            if step.kind is not None and step.kind not in kinds:
                raise ValueError(
                    f"instruments: no instrument of kind {step.kind!r} for step {step.name!r} "
                    f"(kinds given: {', '.join(sorted(kinds))})"
                )
            if step.analysis is None:
                options.append(None)
                continue
            try:
                kind = analysis_kind(step.analysis.agent)
            except KeyError as error:
                raise ValueError(f"workflow step {step.name!r}: {error.args[0]}") from None
            try:
                validated = kind.options.model_validate(step.analysis.options)
            except ValidationError as error:
                raise ValueError(_describe_errors(error.errors(), prefix=where[i])) from None
            options.append(validated)
            for quantity in kind.quantities(validated):
                quantities[f"{step.name}.{quantity.name}"] = quantity
        if not quantities:
            raise ValueError("workflow: no step has an analysis, so nothing is measured for the objectives")
        self._steps, self._options, self._quantities = steps, options, quantities
        self._where = where

    # --- the workflow ----------------------------------------------------------------------------------------
    def steps(self) -> list[StepSpec]:
        """The sample's workflow, in order (the default one for a file without ``workflow``)."""
        return list(self._steps)

    def analysis_options(self, step: int) -> BaseModel | None:
        """The validated options of step ``step``'s analysis (None for a step without one)."""
        return self._options[step]

    def options_location(self, step: int) -> str:
        """Where step ``step``'s analysis options are in the campaign file (for error messages)."""
        return self._where[step]

    def instruments_for(self, step: int) -> list[str]:
        """The instruments that may run step ``step``: the one it names, or every instrument of its kind."""
        spec = self._steps[step]
        if spec.instrument is not None:
            return [spec.instrument]
        return [name for name, instrument in self.instruments.items() if instrument.kind == spec.kind]

    # --- the quantities --------------------------------------------------------------------------------------
    def quantities(self) -> dict[str, Quantity]:
        """Every quantity the workflow's analyses report, by ``step.quantity``."""
        return dict(self._quantities)

    def quantity_key(self, name: str) -> str:
        """The ``step.quantity`` an objective's or constraint's ``name`` refers to.

        Raises:
            ValueError: for a name no analysis reports, or a bare name two steps report.
        """
        if name in self._quantities:
            return name
        matches = [key for key in self._quantities if key.split(".", 1)[1] == name]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ValueError(f"{name!r} is reported by several steps: write one of {', '.join(matches)}")
        known = sorted({key.split(".", 1)[1] for key in self._quantities} | set(self._quantities))
        raise ValueError(f"{name!r} is not a quantity the analysis reports; known: {', '.join(known)}")

    def shares(self) -> list[str]:
        """Objective and constraint names whose quantity is a share in [0, 1] (modelled on a logit scale)."""
        names = [o.name for o in self.objectives] + [c.name for c in self.constraints]
        return [n for n in names if self._quantities[self.quantity_key(n)].share]

    def max_in_flight(self) -> int:
        """The bound on experiments planned but not yet analysed: the file's, else one per instrument of the
        workflow's first step (at least one batch)."""
        if self.budget.max_in_flight is not None:
            return self.budget.max_in_flight
        return max(len(self.instruments_for(0)), self.budget.batch_size, 1)

    def instrument_of_kind(self, kind: str) -> tuple[str, InstrumentSpec]:
        """The first instrument of ``kind`` as ``(name, spec)``."""
        for name, spec in self.instruments.items():
            if spec.kind == kind:
                return name, spec
        raise KeyError(f"no instrument of kind {kind!r}")


def outcome(outcomes: dict[str, dict[str, float]], key: str) -> dict[str, float]:
    """The measured ``step.quantity`` ``key`` of an experiment's outcomes: ``{"value": v, "std": s}``.

    Experiments recorded before workflows were data keep their quantities by bare name; they are found too.

    Raises:
        KeyError: the experiment has no such quantity.
    """
    if key in outcomes:
        return outcomes[key]
    return outcomes[key.split(".", 1)[1]]


# The tags pydantic adds to an error's location inside a union (``float | str``): not part of the field's name.
_UNION_TAGS = {"float", "int", "str", "bool", "none"}

_BOUND_WORDS = {
    "greater_than": "greater than",
    "greater_than_equal": "at least",
    "less_than": "less than",
    "less_than_equal": "at most",
}

_TYPE_WORDS = {
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_type": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be text",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "dict_type": "must be a mapping (key: value lines)",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "model_type": "must be a mapping (key: value lines)",
}


def _pattern_words(parts: tuple[Any, ...]) -> str | None:
    """What a text field of this form must look like, in words (instead of its regular expression)."""
    names = tuple(str(part) for part in parts)
    if names and names[-1] == "address":
        return "must be an address tcp://HOST:PORT, ipc://PATH or inproc://NAME"
    if names[:2] == ("planner", "name"):
        return "must be botorch, sobol, random or a plug-in 'package.module:Class'"
    if names == ("name",):
        return "must start with a letter or digit and hold only letters, digits, '_', '.' and '-'"
    if names[:1] == ("parameters",) and names[-1] == "name":
        return "must be a name of letters, digits and '_', not starting with a digit"
    return None


def _location(parts: tuple[Any, ...]) -> str:
    kept = [str(part) for part in parts]
    while kept and (kept[-1] in _UNION_TAGS or "[" in kept[-1]):
        kept.pop()
    return ".".join(kept)


def _shown(value: Any) -> str:
    """A rejected input as the user wrote it, shortened."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe_error(error: dict[str, Any]) -> str:
    location = _location(error["loc"])
    kind = error["type"]
    given = error.get("input")
    if kind == "extra_forbidden":
        return f"unknown field {location!r} (misspelt?)"
    if kind == "missing":
        return f"missing required field {location!r}"
    bound = next(iter((error.get("ctx") or {}).values()), None)
    if kind in _BOUND_WORDS and isinstance(bound, int | float):
        limit = str(int(bound)) if float(bound).is_integer() else f"{bound:g}"
        return f"{location}: must be {_BOUND_WORDS[kind]} {limit}, got {_shown(given)}"
    if kind in _TYPE_WORDS:
        return f"{location}: {_TYPE_WORDS[kind]}, got {_shown(given)}"
    if kind == "string_pattern_mismatch" and _pattern_words(error["loc"]):
        return f"{location}: {_pattern_words(error['loc'])}, got {_shown(given)}"
    if kind == "too_short":
        least = (error.get("ctx") or {}).get("min_length", 1)
        return f"{location}: must not be empty" if least == 1 else f"{location}: needs at least {least} items"
    message = str(error["msg"]).removeprefix("Value error, ").replace("Input should be", "should be")
    if kind not in ("value_error", "assertion_error") and isinstance(given, str | int | float | bool):
        message += f", got {_shown(given)}"
    return f"{location}: {message}" if location else message


def _describe_errors(errors: list[dict[str, Any]], prefix: str = "") -> str:
    """Every problem once (a union reports each of its members), at most MAX_PROBLEMS_SHOWN of them; ``prefix``
    is where the validated part sits in the campaign file."""
    if prefix:
        errors = [{**error, "loc": (*prefix.split("."), *error["loc"])} for error in errors]
    problems: list[str] = []
    seen: set[str] = set()
    for error in errors:
        where = _location(error["loc"])
        if where in seen:
            continue
        seen.add(where)
        problems.append(_describe_error(error))
    shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
    more = len(problems) - MAX_PROBLEMS_SHOWN
    return shown + (f"; and {more} more problem{'s' if more > 1 else ''}" if more > 0 else "")


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
    if data is None:
        raise CampaignFileError(f"{source}: the campaign file is empty")
    if not isinstance(data, dict):
        raise CampaignFileError(f"{source}: a campaign file must be a YAML mapping, got {type(data).__name__}")
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as error:
        raise CampaignFileError(f"{source}: {_describe_errors(error.errors())}") from None
    except RecursionError:
        raise CampaignFileError(f"{source}: nested too deeply to be a campaign") from None


class _DuplicateKeyError(yaml.YAMLError):
    """A mapping gives one key twice (plain YAML loaders keep the last value silently)."""


class _CampaignLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that gives one key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden: not a repeat
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in first_line:
                    raise _DuplicateKeyError(
                        f"key {key!r} is given twice (lines {first_line[key]} and {key_node.start_mark.line + 1}); "
                        "give each key once"
                    )
                first_line[key] = key_node.start_mark.line + 1
            except TypeError:
                continue  # an unhashable key: the constructor names it
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line for a YAML error: the problem and where it is."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"{error.problem}{where}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _read_campaign_text(path: Path) -> str:
    """The file's text, read with a size limit (a symlink to /dev/zero, a log file by mistake) and as UTF-8."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CAMPAIGN_FILE_BYTES + 1)
    except OSError as error:
        raise CampaignFileError(f"{path}: cannot read campaign file ({error.strerror or error})") from None
    if len(data) > MAX_CAMPAIGN_FILE_BYTES:
        raise CampaignFileError(
            f"{path}: too large for a campaign file (more than {MAX_CAMPAIGN_FILE_BYTES // 1_000_000} MB; "
            "a campaign file is a few kB): is it the right file?"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise CampaignFileError(
            f"{path}: not UTF-8 text: byte 0x{data[error.start]:02x} on line {line}; save the file as UTF-8"
        ) from None


def load_campaign(path: str | Path, *, resources: bool = True) -> CampaignSpec:
    """Read and validate a campaign YAML file.

    Args:
        path: the campaign file.
        resources: also check what the file names outside itself (:func:`check_resources`): CIF files, the
            planner plug-in, the trained model, key files. An emergency stop needs only the addresses.

    Raises:
        CampaignFileError: naming the file, the field and the problem.
    """
    path = Path(path)
    text = _read_campaign_text(path)
    try:
        data = yaml.load(text, Loader=_CampaignLoader)  # a SafeLoader that refuses repeated keys
    except yaml.YAMLError as error:
        raise CampaignFileError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None
    except RecursionError:
        raise CampaignFileError(f"{path}: not valid YAML: nested too deeply") from None
    planner = data.get("planner") if isinstance(data, dict) else None
    if isinstance(planner, dict) and isinstance(planner.get("candidates"), str):
        planner["candidates"] = str(path.parent / planner["candidates"])  # relative to the campaign file
    spec = parse_campaign(data, str(path))
    if resources:
        check_resources(spec, str(path))
    return spec


def check_resources(spec: CampaignSpec, source: str = "<campaign>") -> None:
    """Check what a valid campaign names outside itself, before any instrument or flow starts: what each step's
    analysis names (CIF files of reference phases, a trained model), a planner plug-in ``module:Class`` imports,
    CurveZMQ key files exist.

    Raises:
        CampaignFileError: naming the source, the field and the problem.
    """
    from agents.analyses import analysis_kind

    for i, step in enumerate(spec.steps()):
        options = spec.analysis_options(i)
        if step.analysis is None or options is None:
            continue
        check = analysis_kind(step.analysis.agent).check_resources
        problem = check(options) if check is not None else None
        if problem:
            raise CampaignFileError(f"{source}: {spec.options_location(i)}.{problem}")
    name = spec.planner.name
    if ":" in name:
        problem = _plugin_problem(name)
        if problem:
            raise CampaignFileError(f"{source}: planner.name: planner plug-in {name!r} {problem}")
    keys = [("client_key", spec.client_key)]
    keys += [(f"instruments.{n}.server_key", i.server_key) for n, i in spec.instruments.items()]
    for field, key in keys:
        if key is not None and not Path(key).is_file():
            raise CampaignFileError(f"{source}: {field}: key file {key}: no such file (make one with `crucible keys`)")


def _plugin_problem(name: str) -> str | None:
    """What is wrong with a planner plug-in ``module:Class``, or None: imported as `agents.planner.make_planner`
    will import it."""
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # importing a user's module can raise anything
        return f"cannot be imported ({type(error).__name__}: {' '.join(str(error).split())})"
    target = getattr(module, attribute, None)
    if target is None:
        return f"cannot be imported (module {module_name!r} has no {attribute!r})"
    if not callable(target):
        return f"is not a class (it is a {type(target).__name__})"
    return None
