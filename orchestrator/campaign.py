"""The campaign's steps and state as plain Python: plan, run each workflow step, analyse, record.

A sample's workflow is data (:meth:`orchestrator.spec.CampaignSpec.steps`): each step is a job on an instrument
and, for a measurement, an analysis agent that turns its reading into quantities. This module runs any step the
same way and never knows which technique it drives.

Each step reads the experiment's state from the store, touches at most one instrument, and commits the new state
before returning. An experiment's identity (its id, its sample id and the job ids sent to instruments, one per
step: ``<experiment id>-<step name>``) is written before any instrument is touched, and instruments treat a
repeated job id as the same job, so re-running a step after a crash recovers the instrument's result instead of
making a second sample.

Restart rules:
- ``planned`` experiments are simply run.
- an experiment ``running`` step k re-sends its job id: the instrument reports the job it already ran (or is
  running), or runs it if it never started.
- an experiment that ``ran`` step k continues with step k + 1, and any analysis of steps up to k not yet recorded
  runs; once every step ran and every analysis is recorded it is ``analysed``; ``analysed`` and ``failed`` are
  final.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy.exc import IntegrityError

from agents.analyses import StepAgent, analysis_kind
from agents.planner import (
    CostSpec,
    LinearConstraintSpec,
    MeasurementSpec,
    Observation,
    OutcomeConstraintSpec,
    Planner,
    SpecError,
    make_planner,
)
from agents.planner import (
    ObjectiveSpec as PlannerObjective,
)
from agents.planner import (
    ParameterSpec as PlannerParameter,
)
from instruments.errors import (
    InstrumentBusy,
    InstrumentError,
    InstrumentStopped,
    InstrumentTimeout,
    InstrumentUnreachable,
    JobAborted,
    JobInterrupted,
    LeaseError,
    Unauthorized,
)
from instruments.readings import reading_from_dict
from orchestrator.lab import Lab
from orchestrator.outcomes import CampaignError, best_so_far, counts, is_feasible, measured, objective_value
from orchestrator.spec import SCAN_KEY, CampaignSpec, parse_campaign
from orchestrator.store import (
    CampaignRecord,
    ExperimentRecord,
    ExperimentStatus,
    ProposalRecord,
    StepAnalysisRecord,
    StepResultRecord,
    Store,
)

__all__ = [
    "Campaign",
    "best_so_far",
    "CampaignError",
    "CampaignEvent",
    "TRANSIENT_ERRORS",
    "check_can_open",
    "check_instruments_free",
    "objective_value",
    "revise_campaign",
]

#: Instrument errors worth retrying with the same job id: the instrument may still do (or have done) the job.
TRANSIENT_ERRORS: tuple[type[InstrumentError], ...] = (InstrumentTimeout, InstrumentUnreachable, InstrumentBusy)


class InstrumentRefused(CampaignError):
    """An instrument refused the campaign in a way retrying cannot clear (leased by another, emergency-stopped,
    not allowed): the campaign has paused with the reason, and no experiment failed for it."""


#: How many times a step runs when a restart of the instrument's server interrupts it.
MAX_JOB_ATTEMPTS = 3

#: Refusals that retrying does not clear: they pause the campaign instead of failing experiments.
REFUSALS: tuple[type[InstrumentError], ...] = (LeaseError, InstrumentStopped, Unauthorized)


@dataclass(frozen=True)
class CampaignEvent:
    """A step finished: what the campaign tells whoever watches (progress bars, the Prefect UI)."""

    kind: str  # "planned" | "ran" (a step) | "analysed" | "failed" | "rejected" | "retried"
    experiment_index: int
    experiment_id: str
    message: str = ""
    budget: int = 0  # the campaign's budget at that moment (an operator may change it while it runs)


Observer = Callable[[CampaignEvent], None]


def campaign_planner(spec: CampaignSpec) -> Planner:
    """A fresh planner as the campaign file describes it (told nothing yet)."""
    settings = spec.planner
    parameters = [
        PlannerParameter(
            name=p.name, low=p.low, high=p.high, kind=p.kind, log_scale=p.log_scale, choices=p.choices, unit=p.unit
        )
        for p in spec.parameters
    ]
    objectives = [PlannerObjective(o.name, o.direction, o.target, o.reference) for o in spec.objectives]
    constraints = [OutcomeConstraintSpec(c.name, c.op, c.value) for c in spec.constraints]
    kwargs: dict[str, Any] = {"seed": spec.seed, "n_initial": settings.initial_experiments}
    if settings.candidates is not None:
        kwargs["candidates"] = settings.candidates
    linear = [
        LinearConstraintSpec(tuple(c.coefficients), tuple(c.coefficients.values()), c.op, c.value)
        for c in spec.parameter_constraints
    ]
    if linear:
        kwargs["linear_constraints"] = linear
    if settings.name in ("botorch", "sobol", "random"):  # a plug-in planner gets only what every planner takes
        kwargs["allow_repeats"] = settings.allow_repeats
    if settings.name == "botorch":
        kwargs |= {"raw_samples": settings.raw_samples, "num_restarts": settings.num_restarts, "mode": settings.mode}
        kwargs["fractions"] = tuple(spec.shares())  # shares in [0, 1] are modelled on a logit scale
        modelling = {
            "kernel": settings.kernel,
            "acquisition": settings.acquisition,
            "exploration_weight": settings.exploration_weight,
            "min_noise": settings.noise_floor,
        }
        kwargs |= {name: value for name, value in modelling.items() if value is not None}  # None: planner default
        if settings.cost is not None:
            kwargs["cost"] = CostSpec(
                fixed=settings.cost.fixed,
                per_unit=tuple(settings.cost.per_unit.items()),
                per_choice=tuple((name, tuple(prices.items())) for name, prices in settings.cost.per_choice.items()),
                alpha=settings.cost.alpha,
            )
        scans = spec.measurement.scans
        if scans is not None:  # measurement fidelities; noise priors from counting statistics (variance ~ 1/t)
            kwargs["measurement"] = MeasurementSpec(
                SCAN_KEY,
                tuple(scans),
                costs=tuple(scan.scan_cost for scan in scans.values()),
                noise_variances=tuple(1.0 / scan.counting_time_s for scan in scans.values()),
            )
    try:
        return make_planner(
            settings.name, parameters=parameters, objectives=objectives, constraints=constraints, **kwargs
        )
    except SpecError as error:  # e.g. a plug-in planner that cannot be imported, an infeasible constraint
        raise CampaignError(f"planner {settings.name!r}: {error}") from None


def step_agents(spec: CampaignSpec) -> list[StepAgent | None]:
    """The analysis agent of each workflow step (None for a step without analysis), as the campaign file asks.

    Raises:
        CampaignError: an agent cannot be built (a model that cannot be loaded, one trained on other phases).
    """
    agents: list[StepAgent | None] = []
    for i, step in enumerate(spec.steps()):
        options = spec.analysis_options(i)
        if step.analysis is None or options is None:
            agents.append(None)
            continue
        try:
            agents.append(analysis_kind(step.analysis.agent).build(options))
        except (FileNotFoundError, KeyError, ValueError) as error:
            message = error.args[0] if error.args else str(error)
            raise CampaignError(f"{spec.options_location(i)}: {message}") from None
    return agents


def revise_campaign(store: Store, spec: CampaignSpec) -> list[str]:
    """Continue the stored campaign ``spec.name`` under an edited campaign file, keeping every experiment.

    What may change: bounds and choices of the parameters (widen or narrow the search space), parameter
    constraints, planner settings (fixed values, cost, candidates), objectives and constraints, budget,
    measurement, instruments. What may not: the parameters' names and kinds, the analysis and the simulated
    scenario, which would make the recorded experiments mean something else. Experiments already planned run as
    planned; the planner models every recorded experiment, also those outside narrowed bounds.

    Returns:
        The top-level fields of the campaign file that changed.
    """
    record = store.campaign_by_name(spec.name)
    if record is None:
        raise CampaignError(f"no campaign named {spec.name!r} in {store.url}")
    old = parse_campaign(json.loads(record.spec_json), f"campaign {spec.name!r} in {store.url}")
    kinds_old = {p.name: p.kind for p in old.parameters}
    kinds_new = {p.name: p.kind for p in spec.parameters}
    problems = []
    if kinds_old != kinds_new:
        problems.append(f"its parameters were {kinds_old}, the file has {kinds_new}")
    def route(campaign: CampaignSpec) -> list[tuple[str, Any]]:
        return [(step.name, step.analysis) for step in campaign.steps()]

    if route(old) != route(spec):
        problems.append("the workflow's steps or analyses changed")
    if (old.simulation and old.simulation.scenario) != (spec.simulation and spec.simulation.scenario):
        problems.append("the simulated scenario changed")
    recorded = len(store.experiments(record.id))
    if spec.budget.experiments < recorded:
        problems.append(f"budget {spec.budget.experiments} is below its {recorded} experiments")
    if problems:
        raise CampaignError(
            f"campaign {spec.name!r} cannot continue under the edited file: {'; '.join(problems)}; "
            "give the campaign a new name or pass --fresh"
        )
    before, after = old.model_dump(), spec.model_dump()
    changed = [key for key in after if before.get(key) != after[key]]
    # the file's budget replaces an operator's earlier `crucible budget`
    store.update_campaign(record.id, spec_json=spec.model_dump_json(), budget_experiments=None)
    return changed


def check_can_open(spec: CampaignSpec, store: Store, *, fresh: bool = False, resume: bool = False) -> None:
    """Raise :class:`CampaignError` if :meth:`Campaign.open` would refuse ``spec`` (checked before any instrument
    or flow starts): resuming a campaign that does not exist, or starting one whose name is taken."""
    existing = store.campaign_by_name(spec.name)
    if existing is None or fresh:
        if resume and existing is None:
            raise CampaignError(f"no campaign named {spec.name!r} in {store.url}")
        return
    if resume:
        return
    if existing.spec_json != spec.model_dump_json():
        raise CampaignError(
            f"a different campaign named {spec.name!r} already exists in {store.url}; "
            "rename it, continue it under this file with `crucible run --update`, or pass --fresh to replace it"
        )
    if existing.status == "paused":
        raise CampaignError(
            f"campaign {spec.name!r} is paused in {store.url}; continue it with `crucible resume {spec.name}` "
            "or pass --fresh to start over"
        )
    if existing.status == "running" and store.experiments(existing.id):
        raise CampaignError(
            f"campaign {spec.name!r} already has experiments in {store.url}; "
            f"continue it with `crucible resume {spec.name}` or pass --fresh to start over"
        )


def lease_instruments(spec: CampaignSpec, lab: Lab, store: Store, duration_s: float) -> None:
    """Take the lease of every instrument of ``lab`` for ``duration_s`` (its heartbeat renews them), renewing those
    the campaign held before a crash (their tokens are in the campaign database), and record the tokens.

    Raises:
        CampaignError: naming the first instrument leased by someone else.
    """
    try:
        tokens = lab.lease_all(duration_s, store.lease_tokens(spec.name))
    except LeaseError as error:
        raise CampaignError(f"campaign {spec.name!r} cannot start: {error.message}") from None
    store.set_lease_tokens(spec.name, tokens)


def release_instruments(spec: CampaignSpec, lab: Lab, store: Store) -> None:
    """Give back the leases ``lab`` holds and forget their tokens."""
    lab.release_all()
    store.set_lease_tokens(spec.name, {})


def check_instruments_free(spec: CampaignSpec, lab: Lab, store: Store) -> None:
    """Raise :class:`CampaignError` naming the first instrument leased by someone else (checked before a campaign
    starts: take every lease for a moment and give it back)."""
    lease_instruments(spec, lab, store, 10.0)
    release_instruments(spec, lab, store)


class Campaign:
    """One campaign bound to its store and its lab.

    Use :meth:`open` to start a new campaign or pick up an existing one of the same name.
    """

    def __init__(
        self,
        spec: CampaignSpec,
        store: Store,
        lab: Lab,
        record: CampaignRecord,
        agents: list[StepAgent | None] | None = None,
    ) -> None:
        self.spec = spec
        self.store = store
        self.lab = lab
        self.record = record
        self.observers: list[Observer] = []
        self.steps = spec.steps()
        self.agents = agents if agents is not None else step_agents(spec)
        self.planner: Planner = self._make_planner()
        self._completing = threading.Lock()

    # --- opening -------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, spec: CampaignSpec, store: Store, lab: Lab, *, fresh: bool = False, resume: bool = False) -> Campaign:
        """Create the campaign ``spec.name`` in ``store``, or reopen it.

        Args:
            fresh: delete an earlier campaign of the same name first.
            resume: require the campaign to exist already (``crucible resume``).
        """
        agents = step_agents(spec)  # a model or planner that cannot be used stops the campaign before any record
        campaign_planner(spec)
        check_can_open(spec, store, fresh=fresh, resume=resume)
        existing = store.campaign_by_name(spec.name)
        if existing is not None and fresh:
            store.delete_campaign(existing.id)
            existing = None
        if existing is None:
            record = CampaignRecord(name=spec.name, spec_json=spec.model_dump_json())
            store.add(record)
            return cls(spec, store, lab, record, agents)
        if resume and existing.status != "running":
            existing = store.update_campaign(existing.id, status="running", paused_reason=None)
        if spec.workflow is None:  # a default-workflow campaign, perhaps begun before workflows were data
            steps = spec.steps()
            store.migrate_legacy_experiments(existing.id, (steps[0].name, steps[1].name))
        return cls(spec, store, lab, existing, agents)

    def _make_planner(self) -> Planner:
        return campaign_planner(self.spec)

    # --- state ---------------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.record.id

    def experiments(self) -> list[ExperimentRecord]:
        return self.store.experiments(self.id)

    def unfinished(self) -> list[ExperimentRecord]:
        """Experiments not yet analysed or failed, oldest first."""
        return [e for e in self.experiments() if e.status not in ExperimentStatus.TERMINAL]

    def refresh(self) -> None:
        """Re-read the campaign's record: an operator may have paused it or changed its budget."""
        self.record = self.store.campaign(self.id)

    @property
    def budget(self) -> int:
        """The number of experiments the campaign may run (the campaign file's, unless an operator changed it)."""
        return self.record.budget_experiments or self.spec.budget.experiments

    @property
    def paused(self) -> bool:
        return self.record.status == "paused"

    def remaining_budget(self) -> int:
        """Experiments still to plan: the budget less those recorded (a rejected proposal costs nothing)."""
        return self.budget - _spent(self.experiments())

    @property
    def max_in_flight(self) -> int:
        """At most this many experiments are planned but not yet analysed or failed (after the initial design)."""
        return self.spec.max_in_flight()

    def planning_room(self) -> int:
        """How many experiments may be planned now without outrunning the analysis.

        The initial design needs no results, so it may be planned ahead; after it, a proposal waits until fewer
        than :attr:`max_in_flight` experiments are under way, so the model sees every result there is.
        """
        experiments = self.experiments()
        under_way = sum(e.status not in ExperimentStatus.TERMINAL for e in experiments)
        design_left = self.spec.planner.initial_experiments - _spent(experiments)
        room = max(self.max_in_flight - under_way, design_left, 0)
        return min(room, self.budget - _spent(experiments))

    def finished(self) -> bool:
        return self.remaining_budget() <= 0 and not self.unfinished()

    def _emit(self, kind: str, experiment: ExperimentRecord, message: str = "") -> None:
        event = CampaignEvent(kind, experiment.index, experiment.id, message, self.budget)
        for observer in self.observers:
            observer(event)

    # --- plan ----------------------------------------------------------------------------------------------
    def observations(self) -> list[Observation]:
        """What the planner learns from: every analysed or failed experiment."""
        names = [o.name for o in self.spec.objectives] + [c.name for c in self.spec.constraints]
        observations = []
        for experiment in self.experiments():
            if experiment.excluded_reason is not None:
                continue  # marked bad by an operator: forgotten
            if experiment.status == ExperimentStatus.FAILED:
                observations.append(Observation(experiment.conditions, {}, None, failed=True))
            elif experiment.status == ExperimentStatus.ANALYSED:
                found = {n: measured(self.spec, experiment.outcomes, n) for n in names}
                values = {n: m["value"] for n, m in found.items()}
                # a quantity whose uncertainty the agent does not estimate (std NaN) is told without a variance:
                # the planner infers its noise
                variances = {n: max(m["std"], 1e-9) ** 2 for n, m in found.items() if math.isfinite(m["std"])}
                if all(math.isfinite(v) for v in [*values.values(), *variances.values()]):
                    observations.append(Observation(experiment.conditions, values, variances))
                else:
                    observations.append(Observation(experiment.conditions, {}, None, failed=True))
        return observations

    def plan(self, n: int | None = None) -> list[str]:
        """Ask the planner for up to ``n`` experiments (default: the batch size) and record them as planned.

        Returns the new experiments' ids. Experiments still under way are passed as pending points.
        """
        n = min(n or self.spec.budget.batch_size, self.remaining_budget())
        if n <= 0:
            return []
        planner = self._make_planner()
        observations = self.observations()
        planner.tell(observations)
        under_way = self.unfinished()
        pending = [e.conditions for e in under_way]
        proposals = planner.ask(n, pending=pending, fixed=self.spec.planner.fixed or None)
        self.planner = planner
        start = len(self.experiments())
        failed_seen = sum(o.failed for o in observations)
        pending_json = json.dumps([e.index for e in under_way])
        ids = []
        for offset, proposal in enumerate(proposals):
            experiment = ExperimentRecord(
                campaign_id=self.id,
                index=start + offset,
                sample_id=f"{self.spec.name}-{start + offset:04d}",
                conditions_json=json.dumps(proposal.conditions),
                approved=not self.spec.require_approval,
            )
            predicted = {k: list(v) for k, v in proposal.predicted.items()}
            self.store.add(
                experiment,
                ProposalRecord(
                    experiment_id=experiment.id,
                    strategy=proposal.strategy,
                    acquisition_value=proposal.acquisition_value,
                    predicted_json=json.dumps(predicted),
                    model_made=proposal.model_made,
                    analysed_seen=len(observations) - failed_seen,
                    failed_seen=failed_seen,
                    pending_json=pending_json,
                ),
            )
            waiting = "" if experiment.approved else " (awaiting approval)"
            self._emit("planned", experiment, _format_conditions(proposal.conditions) + waiting)
            ids.append(experiment.id)
        return ids

    # --- instrument steps ----------------------------------------------------------------------------------
    def instrument_for(self, experiment_id: str, step: int) -> str:
        """The instrument step ``step`` of an experiment uses: the one it is already on, else the first that may
        run the step."""
        experiment = self.store.experiment(experiment_id)
        allowed = self.spec.instruments_for(step)
        if experiment.step == step and experiment.instrument in allowed:
            return experiment.instrument  # type: ignore[return-value]
        return allowed[0]

    def _run_on_instrument(
        self, experiment: ExperimentRecord, instrument: str, step: int, job_suffix: str, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """Record that ``experiment`` is on ``instrument``, then run (or recover) its job there.

        The job id is derived from the experiment, so a repeated call (a retry, a resumed campaign) is answered by
        the instrument with the job it already knows. Transient errors (timeouts, an unreachable or busy
        instrument) propagate for the caller's retry policy; a refusal retrying cannot clear (another's lease, an
        emergency stop, a job the stop aborted) pauses the campaign and raises :class:`InstrumentRefused`, the
        experiment left to continue on resume; a job a restart of the instrument's server interrupted runs again
        under a new job id (at most ``MAX_JOB_ATTEMPTS`` in all); a job that failed on the instrument fails the
        experiment.
        """
        spec = self.spec.instruments[instrument]
        self.store.update_experiment(experiment.id, status=ExperimentStatus.RUNNING, step=step, instrument=instrument)
        while True:
            job_id = f"{experiment.id}-{job_suffix}" + (f"-{experiment.job_attempt}" if experiment.job_attempt else "")
            try:
                result = self.lab.client(instrument).run(params, job_id=job_id, timeout_s=spec.run_timeout_s)
            except TRANSIENT_ERRORS:
                raise
            except REFUSALS as error:
                self._refused(experiment, instrument, error)
            except JobInterrupted as error:
                # the instrument's server restarted mid-job (a crash, a power cut): the job never finished and
                # will never run again under its id; the step runs again under a new one, a bounded number of times
                attempt = (experiment.job_attempt or 0) + 1
                if attempt >= MAX_JOB_ATTEMPTS:
                    self.fail(experiment.id, f"{job_suffix} on {instrument} failed: {error} ({attempt} attempts)")
                    raise
                experiment = self.store.update_experiment(experiment.id, job_attempt=attempt)
                self._emit("retried", experiment, f"{job_suffix} on {instrument} interrupted; attempt {attempt + 1}")
                continue
            except JobAborted as error:
                if not self._emergency_stopped(instrument):
                    self.fail(experiment.id, f"{job_suffix} on {instrument} failed: {error}")
                    raise
                # the stop ruined this job: it runs again, under a new job id, once the stop is reset and resumed
                self.store.update_experiment(experiment.id, job_attempt=(experiment.job_attempt or 0) + 1)
                self._refused(experiment, instrument, error)
            except InstrumentError as error:
                self.fail(experiment.id, f"{job_suffix} on {instrument} failed: {error}")
                raise
            return job_id, result

    def _emergency_stopped(self, instrument: str) -> bool:
        try:
            return self.lab.client(instrument).status().get("state") == "stopped"
        except InstrumentError:
            return False

    def _refused(self, experiment: ExperimentRecord, instrument: str, error: InstrumentError) -> NoReturn:
        """Pause the campaign because ``instrument`` refused it, saying how to clear it; the experiment stays
        where it was and continues on resume."""
        address = self.spec.instruments[instrument].address
        if isinstance(error, LeaseError):
            how = "release the other lease (or wait for it to expire)"
        elif isinstance(error, InstrumentStopped | JobAborted):
            how = f"clear the emergency stop (`crucible reset --address {address}`)"
        else:
            how = "give the campaign's client key control of it"
        reason = (
            f"instrument {instrument!r} at {address} refused experiment {experiment.index}: {error}; {how}, "
            f"then `crucible resume {self.spec.name}`"
        )
        self.pause(reason)
        raise InstrumentRefused(reason)

    def run_step(self, experiment_id: str, step: int, instrument: str | None = None) -> None:
        """Run workflow step ``step`` of an experiment on ``instrument`` (by default the one it is already on, or
        the first that may run it) and record what it returned; a step that already ran is not run again.

        The job is sent the experiment's ``sample_id``, the step's fixed ``params``, the planner's conditions if
        the step takes them, and the chosen scan's counting time if it is the measurement. A step with an
        analysis must return a reading of the kind its agent takes.
        """
        experiment = self.store.experiment(experiment_id)
        ready = (experiment.status == ExperimentStatus.PLANNED and step == 0) or (
            experiment.status == ExperimentStatus.RUNNING and experiment.step == step
        ) or (experiment.status == ExperimentStatus.RAN and experiment.step == step - 1)
        if not ready:
            return
        spec = self.steps[step]
        name = instrument or self.instrument_for(experiment_id, step)
        params = self._step_params(experiment, step)
        job_id, result = self._run_on_instrument(experiment, name, step, spec.name, params)
        reading_kind, problem = None, None
        if spec.analysis is not None:
            wanted = analysis_kind(spec.analysis.agent).reading_kind
            try:
                reading_kind = reading_from_dict(result["reading"]).kind
            except (KeyError, TypeError, ValueError) as error:
                problem = f"{name} returned an unusable reading for step {spec.name!r}: {error}"
            if reading_kind is not None and reading_kind != wanted:
                problem = (
                    f"{name} returned a {reading_kind} for step {spec.name!r}; its analysis "
                    f"{spec.analysis.agent!r} takes a {wanted}"
                )
                reading_kind = None
        record = StepResultRecord(
            experiment_id=experiment.id,
            step=spec.name,
            step_index=step,
            sample_id=experiment.sample_id,
            instrument=name,
            job_id=job_id,
            result_json=json.dumps(result),
            reading_kind=reading_kind,
        )
        if problem is not None:
            self.store.add(record)  # what the instrument returned stays on record, for the operator to inspect
            self.fail(experiment.id, problem)
            raise CampaignError(problem)
        if self.store.experiment(experiment.id).status in ExperimentStatus.TERMINAL:
            self.store.add(record)  # the analysis of an earlier step failed it meanwhile: keep what was measured
            return
        self.store.update_experiment(experiment.id, record, status=ExperimentStatus.RAN, step=step)
        self._emit("ran", experiment, f"{spec.name} on {name}" + (f": {reading_kind}" if reading_kind else ""))
        self.complete_if_done(experiment.id)

    def _step_params(self, experiment: ExperimentRecord, step: int) -> dict[str, Any]:
        """What the job of step ``step`` is sent (see :meth:`run_step`)."""
        spec = self.steps[step]
        params: dict[str, Any] = {"sample_id": experiment.sample_id, **spec.params}
        if spec.conditions:
            conditions = dict(experiment.conditions)
            if self.spec.measurement.scans is not None:
                conditions.pop(SCAN_KEY, None)  # how to measure is not a synthesis condition
            params["conditions"] = conditions
        if spec.scan:
            try:
                params["counting_time_s"] = self.spec.measurement.counting_time_for(experiment.conditions.get(SCAN_KEY))
            except KeyError as error:  # a record written under another campaign file
                self.fail(experiment.id, f"cannot measure: {error.args[0]}")
                raise CampaignError(f"experiment {experiment.index}: {error.args[0]}") from None
        return params

    def pending_analyses(self, experiment: ExperimentRecord) -> list[int]:
        """Steps of ``experiment`` whose reading is recorded but not yet analysed."""
        if experiment.status not in (ExperimentStatus.RAN, ExperimentStatus.RUNNING) or experiment.step is None:
            return []
        last_done = experiment.step if experiment.status == ExperimentStatus.RAN else experiment.step - 1
        analysed = self.store.step_analyses(experiment.id)
        return [
            i for i in range(last_done + 1) if self.steps[i].analysis is not None and self.steps[i].name not in analysed
        ]

    # --- analyse and record --------------------------------------------------------------------------------
    def analyse(self, experiment_id: str, step: int | None = None) -> dict[str, dict[str, float]]:
        """Turn the reading of step ``step`` (by default: every measured step not yet analysed) into quantities
        and record them; once every step ran and every analysis is recorded, the experiment is ``analysed`` with
        their quantities, named ``step.quantity``, as its outcomes. Returns the quantities found."""
        experiment = self.store.experiment(experiment_id)
        if experiment.status == ExperimentStatus.ANALYSED:
            return experiment.outcomes
        todo = [step] if step is not None else self.pending_analyses(experiment)
        if step is None and not todo:
            self.complete_if_done(experiment_id)  # every analysis was recorded before a crash: only the verdict
            experiment = self.store.experiment(experiment_id)
            if experiment.status == ExperimentStatus.ANALYSED:
                return experiment.outcomes
            raise CampaignError(f"experiment {experiment.index} is {experiment.status}, with nothing to analyse")
        found: dict[str, dict[str, float]] = {}
        for index in todo:
            found |= self._analyse_step(experiment, index)
        self.complete_if_done(experiment_id)
        return found

    def _analyse_step(self, experiment: ExperimentRecord, step: int) -> dict[str, dict[str, float]]:
        spec = self.steps[step]
        agent = self.agents[step]
        if spec.analysis is None or agent is None:
            raise CampaignError(f"step {spec.name!r} has no analysis")
        recorded = self.store.step_analyses(experiment.id).get(spec.name)
        if recorded is not None:
            return {f"{spec.name}.{k}": v for k, v in recorded.quantities.items()}
        stored = self.store.step_result(experiment.id, spec.name)
        if stored is None or stored.reading is None:
            raise CampaignError(f"experiment {experiment.index}: step {spec.name!r} has no reading to analyse")
        reading = reading_from_dict(stored.reading)
        try:
            report = agent.analyse(reading)
        except (ValueError, RuntimeError, FloatingPointError, TypeError) as error:
            self.fail(experiment.id, f"analysis of {spec.name} failed: {error}")
            where = f"step {spec.name!r} of experiment {experiment.index}"
            raise CampaignError(f"analysis of {where} failed: {error}") from None
        quantities = report.as_dict()
        record = StepAnalysisRecord(
            experiment_id=experiment.id,
            step=spec.name,
            agent=report.agent,
            quantities_json=json.dumps(quantities),
            warnings_json=json.dumps(list(getattr(report, "warnings", ()))),
        )
        try:
            self.store.add(record)
        except IntegrityError:  # analysed meanwhile by another worker: its record stands
            pass
        return {f"{spec.name}.{k}": v for k, v in quantities.items()}

    def complete_if_done(self, experiment_id: str) -> None:
        """Record the experiment as analysed once its last step ran and every analysis is recorded."""
        with self._completing:
            experiment = self.store.experiment(experiment_id)
            if experiment.status != ExperimentStatus.RAN or experiment.step != len(self.steps) - 1:
                return
            analyses = self.store.step_analyses(experiment_id)
            wanted = [step.name for step in self.steps if step.analysis is not None]
            if any(name not in analyses for name in wanted):
                return
            outcomes = {f"{name}.{q}": m for name in wanted for q, m in analyses[name].quantities.items()}
            self.store.update_experiment(
                experiment_id, status=ExperimentStatus.ANALYSED, outcomes_json=json.dumps(outcomes)
            )
        objective = self.spec.objectives[0].name
        found = measured(self.spec, outcomes, objective)
        self._emit("analysed", experiment, f"{objective} = {found['value']:.4g} ± {found['std']:.2g}")

    def fail(self, experiment_id: str, reason: str) -> None:
        """Record an experiment as failed with ``reason`` (once; a failed experiment stays failed)."""
        experiment = self.store.experiment(experiment_id)
        if experiment.status in ExperimentStatus.TERMINAL:
            return
        self.store.update_experiment(experiment_id, status=ExperimentStatus.FAILED, failure_reason=reason)
        self._emit("failed", experiment, reason)

    # --- results -------------------------------------------------------------------------------------------
    def best(self) -> ExperimentRecord | None:
        """The analysed experiment with the best objective among those meeting every constraint."""
        analysed = [e for e in self.experiments() if counts(e)]
        feasible = [e for e in analysed if is_feasible(self.spec, e.outcomes)]
        if not feasible:
            return None
        return max(feasible, key=lambda e: objective_value(self.spec, e.outcomes))

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary: the campaign's id, counts and best result so far."""
        experiments = self.experiments()
        best = self.best()
        return {
            "campaign_id": self.id,
            "status": self.record.status,
            "budget": self.budget,
            "experiments": _spent(experiments),
            "failed": sum(e.status == ExperimentStatus.FAILED for e in experiments),
            "rejected": sum(e.status == ExperimentStatus.REJECTED for e in experiments),
            "best_conditions": best.conditions if best else None,
            "best_outcomes": best.outcomes if best else None,
        }

    def finish(self) -> None:
        """Mark the campaign finished once its budget is spent and nothing is under way."""
        self.refresh()
        if self.finished():
            self.record = self.store.update_campaign(self.id, status="finished")

    # --- operator controls ---------------------------------------------------------------------------------
    def pause(self, reason: str = "paused by an operator") -> None:
        """Stop starting new work; what is on an instrument finishes and is recorded. ``resume`` continues."""
        self.record = self.store.update_campaign(self.id, status="paused", paused_reason=reason)

    def lease_instruments(self, duration_s: float = 60.0) -> None:
        """Hold every instrument for as long as the campaign runs (see :func:`lease_instruments`)."""
        lease_instruments(self.spec, self.lab, self.store, duration_s)

    def release_instruments(self) -> None:
        """Give back the instruments' leases (on pause and at the end)."""
        release_instruments(self.spec, self.lab, self.store)

    def set_budget(self, experiments: int) -> None:
        """Change the number of experiments mid-campaign (never below what already exists). Raising the budget of
        a finished campaign makes it resumable (status ``paused``)."""
        existing = _spent(self.experiments())
        if experiments < existing:
            raise CampaignError(
                f"campaign {self.spec.name!r} already has {existing} experiments; budget {experiments} is below that"
            )
        self.refresh()
        changes: dict[str, Any] = {"budget_experiments": experiments}
        if self.record.status == "finished" and experiments > existing:
            changes["status"] = "paused"
        self.record = self.store.update_campaign(self.id, **changes)

    def approve(self, indices: Sequence[int] | None = None) -> list[int]:
        """Approve planned experiments (all awaiting, or those with ``indices``); return the approved indices."""
        approved = []
        for experiment in self.experiments():
            if not experiment.approved and (indices is None or experiment.index in indices):
                self.store.update_experiment(experiment.id, approved=True)
                approved.append(experiment.index)
        return approved

    def reject(self, indices: Sequence[int] | None, reason: str) -> list[int]:
        """Refuse planned experiments awaiting approval (all, or those with ``indices``); return their indices.

        A rejected experiment stays on record with the reason, never runs, costs no budget, and the planner plans
        a replacement (it does not learn from the rejection as if the conditions had failed)."""
        rejected = []
        for experiment in self.experiments():
            if experiment.status != ExperimentStatus.PLANNED or experiment.approved:
                continue
            if indices is None or experiment.index in indices:
                self.store.update_experiment(
                    experiment.id, status=ExperimentStatus.REJECTED, failure_reason=f"rejected: {reason}"
                )
                self._emit("rejected", experiment, reason)
                rejected.append(experiment.index)
        return rejected

    def mark_bad(self, index: int, reason: str) -> None:
        """An operator's verdict after the fact: the experiment stays on record but the planner forgets it."""
        for experiment in self.experiments():
            if experiment.index == index:
                self.store.update_experiment(experiment.id, excluded_reason=reason or "marked bad")
                return
        raise CampaignError(f"campaign {self.spec.name!r} has no experiment {index}")


def _spent(experiments: Sequence[ExperimentRecord]) -> int:
    """Experiments that count against the budget: every recorded one but those an operator rejected."""
    return sum(e.status != ExperimentStatus.REJECTED for e in experiments)


def _format_conditions(conditions: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in conditions.items())
