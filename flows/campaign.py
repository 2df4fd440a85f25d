"""The campaign loop as a Prefect flow: plan -> synthesise -> characterise -> analyse -> record -> plan.

The flow is a thin wrapper: every task calls one step of :class:`orchestrator.campaign.Campaign`, which holds the
logic and the state. Runs show up in the Prefect UI when ``PREFECT_API_URL`` points at a server; without one,
Prefect runs the flow against a temporary local server.
"""

from __future__ import annotations

import os

# Prefect's server telemetry writes to its SQLite store while runs do and logs "database is locked" tracebacks;
# Crucible never needs it. Set before prefect is imported.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import contextvars  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Any  # noqa: E402

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import PrefectFuture, as_completed  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402

from orchestrator.campaign import TRANSIENT_ERRORS, Campaign, CampaignEvent, best_so_far  # noqa: E402
from orchestrator.lab import Lab  # noqa: E402
from orchestrator.scheduler import ANALYSE, CHARACTERISE, SYNTHESISE, Scheduler  # noqa: E402
from orchestrator.spec import parse_campaign  # noqa: E402
from orchestrator.store import Store  # noqa: E402

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


@task(name="synthesise", **_STEP_OPTIONS)
def synthesise_task(campaign: Campaign, experiment_id: str, instrument: str | None = None) -> None:
    campaign.synthesise(experiment_id, instrument)


@task(name="characterise", **_STEP_OPTIONS)
def characterise_task(campaign: Campaign, experiment_id: str, instrument: str | None = None) -> None:
    campaign.characterise(experiment_id, instrument)


@task(name="analyse", cache_policy=NO_CACHE)
def analyse_task(campaign: Campaign, experiment_id: str, instrument: str | None = None) -> dict[str, dict[str, float]]:
    return campaign.analyse(experiment_id)


_STEP_TASKS = {SYNTHESISE: synthesise_task, CHARACTERISE: characterise_task, ANALYSE: analyse_task}


class PrefectExecutor:
    """Runs the scheduler's steps as Prefect task runs named after campaign, step and experiment."""

    def plan(self, campaign: Campaign) -> list[str]:
        label = f"{campaign.spec.name}-{len(campaign.experiments()):03d}"
        return plan_task.with_options(task_run_name=f"plan-{label}")(campaign, 1)

    def submit(self, campaign: Campaign, step: str, experiment_id: str, instrument: str | None) -> PrefectFuture:
        index = campaign.store.experiment(experiment_id).index
        name = f"{step}-{campaign.spec.name}-{index:03d}"
        tags = [f"instrument:{instrument}"] if instrument else []
        step_task = _STEP_TASKS[step].with_options(task_run_name=name, tags=tags)
        return step_task.submit(campaign, experiment_id, instrument)

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
    campaign_name: str, spec: dict[str, Any], database_url: str, fresh: bool = False, resume: bool = False
) -> dict[str, Any]:
    """Run (or resume) the campaign ``spec`` until its budget is spent; return a summary."""
    campaign_spec = parse_campaign(spec, campaign_name)
    store = Store(database_url)
    with Lab.from_spec(campaign_spec) as lab:
        campaign = Campaign.open(campaign_spec, store, lab, fresh=fresh, resume=resume)
        campaign.observers.extend(_observers.get())
        Scheduler(campaign, PrefectExecutor()).run()
        campaign.finish()
        _publish_artifacts(campaign)
        summary = campaign.summary()
    store.close()
    return summary


def _artifact_key(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _publish_artifacts(campaign: Campaign) -> None:
    """A table of experiments and a short markdown summary for the Prefect UI."""
    spec = campaign.spec
    objective = spec.objectives[0].name
    rows = []
    for experiment in campaign.experiments():
        outcome = experiment.outcomes.get(objective, {})
        rows.append(
            {
                "index": experiment.index,
                "status": experiment.status,
                **{k: round(v, 5) if isinstance(v, float) else v for k, v in experiment.conditions.items()},
                objective: round(outcome.get("value", float("nan")), 4),
                f"{objective}_std": round(outcome.get("std", float("nan")), 4),
                "failure": experiment.failure_reason or "",
            }
        )
    key = _artifact_key(spec.name)
    create_table_artifact(rows, key=f"{key}-experiments", description=f"Experiments of campaign {spec.name}")
    best = campaign.best()
    curve = best_so_far(spec, campaign.experiments())
    lines = [f"# Campaign {spec.name}", "", spec.description, "", f"- experiments: {len(rows)}"]
    if best is not None:
        lines.append(f"- best {objective}: {best.outcomes[objective]['value']:.4g} (experiment {best.index})")
        lines.append(f"- best conditions: {best.conditions}")
    lines.append(f"- best so far: {[round(v, 3) for v in curve]}")
    create_markdown_artifact("\n".join(lines), key=f"{key}-report", description=f"Report of campaign {spec.name}")
