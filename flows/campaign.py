"""The campaign loop as a Prefect flow: plan -> each workflow step (make, measure, ...) -> analyse -> record -> plan.

The flow is a thin wrapper: every task calls one step of :class:`orchestrator.campaign.Campaign`, which holds the
logic and the state. Runs show up in the Prefect UI when ``PREFECT_API_URL`` points at a server; without one,
Prefect runs the flow against a temporary local server.
"""

from __future__ import annotations

import os

# Prefect's server telemetry writes to its SQLite store while runs do and logs "database is locked" tracebacks;
# Crucible never needs it. Set before prefect is imported.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import base64  # noqa: E402
import contextvars  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import (  # noqa: E402
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.context import FlowRunContext  # noqa: E402
from prefect.exceptions import FlowPauseTimeout  # noqa: E402
from prefect.flow_runs import pause_flow_run, resume_flow_run  # noqa: E402
from prefect.futures import PrefectFuture, as_completed  # noqa: E402
from prefect.input import RunInput  # noqa: E402
from prefect.states import Cancelled, State  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402
from pydantic import Field  # noqa: E402

from agents.analyses import analysis_kind  # noqa: E402
from instruments.readings import reading_from_dict  # noqa: E402
from orchestrator.campaign import TRANSIENT_ERRORS, Campaign, CampaignEvent, best_so_far, measured  # noqa: E402
from orchestrator.lab import Lab  # noqa: E402
from orchestrator.outcomes import is_feasible  # noqa: E402
from orchestrator.runner_lock import RunnerLock  # noqa: E402
from orchestrator.scheduler import ANALYSE, Action, Scheduler  # noqa: E402
from orchestrator.spec import parse_campaign  # noqa: E402
from orchestrator.store import ExperimentRecord, ExperimentStatus, Store  # noqa: E402

__all__ = ["campaign_flow", "observing"]

_observers: contextvars.ContextVar[tuple[Callable[[CampaignEvent], None], ...]] = contextvars.ContextVar(
    "crucible_observers", default=()
)


@contextmanager
def observing(*observers: Callable[[CampaignEvent], None]) -> Iterator[None]:
    """Let ``observers`` (e.g. a progress bar) watch campaigns run by :func:`campaign_flow` in this context."""
    token = _observers.set(_observers.get() + observers)
    try:
        yield
    finally:
        _observers.reset(token)


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a step only for instrument errors worth retrying (timeouts, unreachable or busy instruments)."""
    try:
        state.result()
    except TRANSIENT_ERRORS:
        return True
    except BaseException:  # noqa: BLE001 - any other failure is final
        return False
    return False


_STEP_OPTIONS: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_condition_fn": _transient,
}


@task(name="plan", cache_policy=NO_CACHE)
def plan_task(campaign: Campaign, n: int) -> list[str]:
    return campaign.plan(n)


@task(name="step", **_STEP_OPTIONS)
def step_task(campaign: Campaign, experiment_id: str, step: int, instrument: str | None = None) -> None:
    """Run one workflow step of an experiment on an instrument (its task run is named after step and experiment)."""
    campaign.run_step(experiment_id, step, instrument)


@task(name="analyse", cache_policy=NO_CACHE)
def analyse_task(campaign: Campaign, experiment_id: str, step: int) -> dict[str, dict[str, float]]:
    """Analyse one step's reading of an experiment."""
    return campaign.analyse(experiment_id, step)


#: How long one pause waits for a decision before the scheduler looks again (and pauses anew).
_APPROVAL_TIMEOUT_S = 24 * 3600


def apply_decision(campaign: Campaign, waiting: list[ExperimentRecord], decision: ApprovalDecision) -> None:
    """Approve and reject as ``decision`` says, for the experiments of ``waiting`` only (others are ignored, and
    an experiment both approved and rejected is left waiting)."""
    logger = get_run_logger()
    indices = {e.index for e in waiting}
    both = set(decision.approve) & set(decision.reject)
    strays = (set(decision.approve) | set(decision.reject)) - indices
    if strays or both:
        logger.warning(
            "decision ignored for experiments %s (not awaiting, or both approved and rejected)", sorted(strays | both)
        )
    approve = [i for i in decision.approve if i in indices and i not in both]
    reject = [i for i in decision.reject if i in indices and i not in both]
    if approve:
        campaign.approve(approve)
    if reject:
        campaign.reject(reject, decision.reason or "rejected in the Prefect UI")
    logger.info("approved %s, rejected %s", approve, reject)


def _answer_from_store(
    campaign: Campaign, waiting: list[ExperimentRecord], flow_run_id: Any, stop: threading.Event, poll_s: float
) -> None:
    """While the flow run is paused, resume it with the decisions an operator recorded in the campaign database."""
    store = Store(campaign.store.url)  # its own connection
    try:
        while not stop.wait(poll_s):
            records = [store.experiment(e.id) for e in waiting]
            approved = [r.index for r in records if r.approved]
            rejected = [r.index for r in records if r.status == ExperimentStatus.REJECTED]
            paused = store.campaign(campaign.id).status == "paused"
            if not (approved or rejected or paused):
                continue
            try:
                resume_flow_run(flow_run_id, run_input={"approve": approved, "reject": rejected, "reason": ""})
            except Exception:  # noqa: BLE001 - the flow run was resumed from the UI meanwhile
                pass
            return
    finally:
        store.close()



class ApprovalDecision(RunInput):
    """The operator's decision on proposed experiments, as the Prefect UI's resume form asks for it.

    Experiments listed in ``approve`` run; those in ``reject`` are refused with ``reason`` (they cost no budget and
    the planner proposes others); any not listed keep waiting for a decision.
    """

    approve: list[int] = Field(default_factory=list, description="Experiment numbers to run.")
    reject: list[int] = Field(default_factory=list, description="Experiment numbers to refuse.")
    reason: str = Field(default="", description="Why the refused experiments should not run (kept on record).")


def approval_form(campaign: Campaign, experiments: list[ExperimentRecord]) -> type[ApprovalDecision]:
    """The resume form for ``experiments``: a table of the proposed batch, every one approved by default."""
    spec = campaign.spec
    names = [p.name for p in spec.parameters]
    header = ["#", *(f"{p.name} [{p.unit}]" if p.unit else p.name for p in spec.parameters), "proposed by"]
    lines = [
        f"**Campaign {spec.name}** proposes {len(experiments)} experiment(s). Approve them all (the default), "
        "move some to *reject* with a reason, or decide with `crucible approve` / `crucible reject`.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for experiment in experiments:
        proposal = campaign.store.proposal(experiment.id)
        values = [_cell(experiment.conditions.get(name)) for name in names]
        strategy = proposal.strategy if proposal is not None else ""
        lines.append(f"| {experiment.index} | " + " | ".join(values) + f" | {strategy} |")
    return ApprovalDecision.with_initial_data(
        description="\n".join(lines), approve=[e.index for e in experiments], reject=[], reason=""
    )


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class PrefectExecutor:
    """Runs the scheduler's steps as Prefect task runs named after campaign, step and experiment.

    Args:
        approval_poll_s: how often a paused flow run looks for a decision (the UI's form, or the CLI's in the
            campaign database).
    """

    def __init__(self, approval_poll_s: float = 2.0) -> None:
        self.approval_poll_s = approval_poll_s

    def plan(self, campaign: Campaign, n: int) -> list[str]:
        label = f"{campaign.spec.name}-{len(campaign.experiments()):03d}"
        return plan_task.with_options(task_run_name=f"plan-{label}")(campaign, n)

    def await_approval(self, campaign: Campaign, experiment_ids: list[str]) -> None:
        """Pause the flow run with a form listing the experiments awaiting approval, and apply the decision.

        A decision taken meanwhile with the CLI (``crucible approve``, ``reject`` or ``pause``) resumes the flow run
        too: a watcher reads the campaign database and answers the form with what was decided there, so whichever
        way the decision came, the orchestrator applies it once, here."""
        waiting = [campaign.store.experiment(i) for i in experiment_ids]
        waiting = [e for e in waiting if e.status == ExperimentStatus.PLANNED and not e.approved]
        if not waiting:
            return
        logger = get_run_logger()
        logger.info("experiments %s await approval: resume this flow run with a decision", [e.index for e in waiting])
        flow_run_id = FlowRunContext.get().flow_run.id  # type: ignore[union-attr]
        stop = threading.Event()
        watcher = threading.Thread(
            target=_answer_from_store, args=(campaign, waiting, flow_run_id, stop, self.approval_poll_s), daemon=True
        )
        watcher.start()
        try:
            decision = pause_flow_run(
                wait_for_input=approval_form(campaign, waiting),
                timeout=_APPROVAL_TIMEOUT_S,
                poll_interval=max(1, round(self.approval_poll_s)),
            )
        except FlowPauseTimeout:
            logger.warning("no decision on experiments %s within %d s", [e.index for e in waiting], _APPROVAL_TIMEOUT_S)
            return
        finally:
            stop.set()
            watcher.join()
        apply_decision(campaign, waiting, decision)

    def submit(self, campaign: Campaign, action: Action, experiment_id: str, instrument: str | None) -> PrefectFuture:
        index = campaign.store.experiment(experiment_id).index
        name = f"{action.label}-{campaign.spec.name}-{index:03d}"
        tags = [f"instrument:{instrument}"] if instrument else []
        tags.append(f"step:{action.step_name}")
        if action.kind == ANALYSE:
            return analyse_task.with_options(task_run_name=name, tags=tags).submit(campaign, experiment_id, action.step)
        run = step_task.with_options(task_run_name=name, tags=tags)
        return run.submit(campaign, experiment_id, action.step, instrument)

    def first_done(self, handles: list[Any]) -> Any:
        return next(as_completed(handles))

    def error(self, handle: Any) -> BaseException | None:
        try:
            handle.result()
        except BaseException as error:  # noqa: BLE001 - reported to the scheduler, which records the failure
            get_run_logger().warning("%s failed: %s", handle.task_run_id, error)
            return error
        return None


@flow(
    name="crucible-campaign",
    flow_run_name="{campaign_name}",
    validate_parameters=False,
    task_runner=ThreadPoolTaskRunner(max_workers=32),
)
def campaign_flow(
    campaign_name: str,
    spec: dict[str, Any],
    database_url: str,
    fresh: bool = False,
    resume: bool = False,
    approval_poll_s: float = 2.0,
) -> dict[str, Any] | State:
    """Run (or resume) the campaign ``spec`` until its budget is spent; return a summary.

    A campaign an operator paused ends the flow run Cancelled, with a message saying how far it got and how to
    continue, instead of Completed."""
    campaign_spec = parse_campaign(spec, campaign_name)
    store = Store(database_url)
    holder = f"crucible campaign {campaign_spec.name} ({socket.gethostname()}:{os.getpid()})"
    with RunnerLock(store, campaign_spec.name), Lab.from_spec(campaign_spec, holder, heartbeat_s=2.0) as lab:
        campaign = Campaign.open(campaign_spec, store, lab, fresh=fresh, resume=resume)
        campaign.lease_instruments()  # nobody else drives them while the campaign runs
        try:
            campaign.observers.extend(_observers.get())
            campaign.observers.append(_Dashboard(campaign))
            campaign.observers.append(_RunLog(get_run_logger()))
            Scheduler(campaign, PrefectExecutor(approval_poll_s)).run()
        finally:
            campaign.release_instruments()
        campaign.finish()
        _publish_artifacts(campaign)
        summary = campaign.summary()
        paused = campaign.paused
        reason = campaign.record.paused_reason
    store.close()
    if paused:
        done = f"{summary['experiments']} of {summary['budget']} experiments"
        if reason in (None, "paused by an operator"):
            message = (
                f"campaign {campaign_name} paused by an operator after {done}; "
                f"`crucible resume {campaign_name}` continues it"
            )
        else:
            message = f"campaign {campaign_name} paused after {done}: {reason}"
        get_run_logger().warning(message)
        return Cancelled(message=message, data=summary)
    return summary


def _artifact_key(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _experiment_rows(campaign: Campaign) -> list[dict[str, Any]]:
    """One row per experiment: its conditions, then one column group per workflow step (the instrument that ran
    it, and the objectives' and constraints' quantities it reported, as value ± standard deviation), whether it met
    every constraint; units in the headers."""
    spec = campaign.spec
    watched = [o.name for o in spec.objectives] + [c.name for c in spec.constraints]
    by_step = {step.name: [n for n in watched if spec.quantity_key(n).split(".", 1)[0] == step.name] for step in
               campaign.steps}
    from orchestrator.report import proposed_by

    proposals = campaign.store.proposals(campaign.id)
    step_results = campaign.store.campaign_step_results(campaign.id)
    quantities = spec.quantities()
    units = {p.name: f"{p.name} [{p.unit}]" for p in spec.parameters if p.unit}  # column headers carry units
    for name in watched:
        unit = quantities[spec.quantity_key(name)].unit
        if unit:
            units[name] = f"{name} [{unit}]"
    rows = []
    for experiment in campaign.experiments():
        outcomes = experiment.outcomes
        row: dict[str, Any] = {"index": experiment.index, "status": experiment.status}
        row["proposed_by"] = proposed_by(proposals.get(experiment.id))
        conditions = experiment.conditions.items()
        row |= {units.get(k, k): float(f"{v:.5g}") if isinstance(v, float) else v for k, v in conditions}
        ran_on = {result.step: result.instrument for result in step_results.get(experiment.id, [])}
        for step in campaign.steps:
            row[f"{step.name}_instrument"] = ran_on.get(step.name, "")
            for name in by_step[step.name]:
                found = measured(spec, outcomes, name) if outcomes else {}
                row[units.get(name, name)] = _with_std(found.get("value"), found.get("std"))
        analysed = experiment.status == ExperimentStatus.ANALYSED
        row["feasible"] = ("yes" if is_feasible(spec, outcomes) else "no") if analysed else ""
        row["failure"] = experiment.failure_reason or ""
        row["marked_bad"] = experiment.excluded_reason or ""
        rows.append(row)
    return rows


def _with_std(value: float | None, std: float | None) -> str:
    """``"8.369 ± 0.067"``: four significant digits, the std to two; an undetermined quantity is "—", a quantity
    whose uncertainty the analysis does not estimate is shown alone."""
    if value is None or not math.isfinite(value):
        return "—"
    if std is None or not math.isfinite(std):
        return f"{value:.4g}"
    return f"{value:.4g} ± {std:.2g}"


def _publish_table(campaign: Campaign) -> None:
    key = _artifact_key(campaign.spec.name)
    create_table_artifact(
        _experiment_rows(campaign),
        key=f"{key}-experiments",
        description=f"Experiments of campaign {campaign.spec.name}",
    )


def _png_markdown(path: Path, title: str) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode()
    return f"![{title}](data:image/png;base64,{encoded})"


def _publish_artifacts(campaign: Campaign) -> None:
    """The table of experiments, and a markdown report with the best-so-far plot, the Pareto front (several
    objectives), the map of measured shares (phase fractions over two conditions) and the latest reading's view."""
    from orchestrator.report import closed_loop_line, plot_best_so_far
    from orchestrator.views import plot_pareto_front, plot_share_map

    spec = campaign.spec
    _publish_table(campaign)
    objective = spec.objectives[0].name
    experiments = campaign.experiments()
    best = campaign.best()
    lines = [f"# Campaign {spec.name}", "", spec.description, "", f"- experiments: {len(experiments)}"]
    lines.append(f"- failed: {sum(e.status == ExperimentStatus.FAILED for e in experiments)}")
    lines.append(f"- {closed_loop_line(spec, experiments, campaign.store.proposals(campaign.id))}")
    if best is not None:
        value = measured(spec, best.outcomes, objective)["value"]
        lines.append(f"- best {objective}: {value:.4g} (experiment {best.index})")
        lines.append(f"- best conditions: {best.conditions}")
    curve = [round(v, 4) for v in best_so_far(spec, experiments)]
    lines += ["", "## Best so far", "", f"`{curve}`", ""]
    with tempfile.TemporaryDirectory() as directory:
        proposals = campaign.store.proposals(campaign.id)
        plot = plot_best_so_far(spec, experiments, Path(directory) / "best.png", proposals=proposals)
        lines += [_png_markdown(plot, "best so far"), ""]
        front = plot_pareto_front(spec, experiments, Path(directory) / "pareto.png")
        if front is not None:
            lines += ["## Pareto front", "", _png_markdown(front, "Pareto front"), ""]
        shares = plot_share_map(spec, experiments, Path(directory) / "shares.png")
        if shares is not None:
            lines += ["## Phase map: measured shares over the conditions", "", _png_markdown(shares, "phase map"), ""]
        analysed = [e for e in experiments if e.status == ExperimentStatus.ANALYSED]
        if analysed:
            lines += _step_views(campaign, analysed[-1], Path(directory))
    create_markdown_artifact(
        "\n".join(lines), key=f"{_artifact_key(spec.name)}-report", description=f"Report of campaign {spec.name}"
    )


def _step_views(campaign: Campaign, experiment: ExperimentRecord, directory: Path) -> list[str]:
    """Markdown with the picture each analysed step of ``experiment`` offers (e.g. a pattern and its fit)."""
    lines: list[str] = []
    for k, step in enumerate(campaign.steps):
        agent = campaign.agents[k]
        stored = campaign.store.step_result(experiment.id, step.name)
        if step.analysis is None or agent is None or stored is None or stored.reading is None:
            continue
        view = analysis_kind(step.analysis.agent).view
        if view is None:
            continue
        reading = reading_from_dict(stored.reading)
        title = f"experiment {experiment.index}, sample {experiment.sample_id}, step {step.name}"
        path = view(reading, agent.analyse(reading), title, directory / f"{step.name}.png")
        if path is not None:
            lines += [f"## Latest {step.name} reading and its analysis", "", _png_markdown(path, step.name), ""]
    return lines


class _RunLog:
    """Writes each campaign event to the flow run's log, the Logs tab of the Prefect UI: what was planned, which
    step ran on which instrument, what the analysis found, what failed (a warning) and why."""

    _LEVELS = {"failed": logging.WARNING, "rejected": logging.WARNING, "retried": logging.WARNING}

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter) -> None:
        self.logger = logger  # bound to the flow run, so events from task threads land in its log too

    def __call__(self, event: CampaignEvent) -> None:
        level = self._LEVELS.get(event.kind, logging.INFO)
        self.logger.log(level, "experiment %d %s: %s", event.experiment_index, event.kind, event.message or "-")


class _Dashboard:
    """Keeps the campaign's progress artifact and experiment table current as experiments finish."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self.lock = threading.Lock()
        self.progress_id = create_progress_artifact(
            progress=self.percent(),
            key=f"{_artifact_key(campaign.spec.name)}-progress",
            description=f"Experiments of campaign {campaign.spec.name} done",
        )

    def percent(self) -> float:
        done = sum(e.status in ExperimentStatus.TERMINAL for e in self.campaign.experiments())
        return 100.0 * min(done / max(self.campaign.budget, 1), 1.0)

    def __call__(self, event: CampaignEvent) -> None:
        if event.kind not in ("analysed", "failed"):
            return
        with self.lock:
            update_progress_artifact(self.progress_id, progress=self.percent())
            _publish_table(self.campaign)
