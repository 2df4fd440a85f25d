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

from instruments.errors import InstrumentError  # noqa: E402
from orchestrator.campaign import Campaign, CampaignError, CampaignEvent, best_so_far  # noqa: E402
from orchestrator.lab import Lab  # noqa: E402
from orchestrator.spec import parse_campaign  # noqa: E402
from orchestrator.store import ExperimentStatus, Store  # noqa: E402

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


@task(name="plan", cache_policy=NO_CACHE)
def plan_task(campaign: Campaign, n: int) -> list[str]:
    return campaign.plan(n)


@task(name="synthesise", cache_policy=NO_CACHE)
def synthesise_task(campaign: Campaign, experiment_id: str) -> None:
    campaign.synthesise(experiment_id)


@task(name="characterise", cache_policy=NO_CACHE)
def characterise_task(campaign: Campaign, experiment_id: str) -> None:
    campaign.characterise(experiment_id)


@task(name="analyse", cache_policy=NO_CACHE)
def analyse_task(campaign: Campaign, experiment_id: str) -> dict[str, dict[str, float]]:
    return campaign.analyse(experiment_id)


def run_experiment(campaign: Campaign, experiment_id: str) -> None:
    """Carry one experiment from wherever it stands to its record; a failure is recorded, not raised."""
    experiment = campaign.store.experiment(experiment_id)
    label = f"{campaign.spec.name}-{experiment.index:03d}"
    steps = (("synthesise", synthesise_task), ("characterise", characterise_task), ("analyse", analyse_task))
    try:
        for step, step_task in steps:
            step_task.with_options(task_run_name=f"{step}-{label}")(campaign, experiment_id)
    except (InstrumentError, CampaignError) as error:
        get_run_logger().warning("experiment %s failed: %s", label, error)


@flow(name="crucible-campaign", flow_run_name="{campaign_name}", validate_parameters=False)
def campaign_flow(
    campaign_name: str, spec: dict[str, Any], database_url: str, fresh: bool = False, resume: bool = False
) -> dict[str, Any]:
    """Run (or resume) the campaign ``spec`` until its budget is spent; return a summary."""
    campaign_spec = parse_campaign(spec, campaign_name)
    store = Store(database_url)
    with Lab.from_spec(campaign_spec) as lab:
        campaign = Campaign.open(campaign_spec, store, lab, fresh=fresh, resume=resume)
        campaign.observers.extend(_observers.get())
        for experiment in campaign.unfinished():
            run_experiment(campaign, experiment.id)
        while campaign.remaining_budget() > 0:
            label = f"{campaign_spec.name}-{len(campaign.experiments()):03d}"
            plan = plan_task.with_options(task_run_name=f"plan-{label}")
            for experiment_id in plan(campaign, campaign_spec.budget.batch_size):
                run_experiment(campaign, experiment_id)
        campaign.finish()
        _publish_artifacts(campaign)
        best = campaign.best()
        experiments = campaign.experiments()
        summary = {
            "campaign_id": campaign.id,
            "experiments": len(experiments),
            "failed": sum(e.status == ExperimentStatus.FAILED for e in experiments),
            "best_conditions": best.conditions if best else None,
            "best_outcomes": best.outcomes if best else None,
        }
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
        rows.append({
            "index": experiment.index,
            "status": experiment.status,
            **{k: round(v, 5) if isinstance(v, float) else v for k, v in experiment.conditions.items()},
            objective: round(outcome.get("value", float("nan")), 4),
            f"{objective}_std": round(outcome.get("std", float("nan")), 4),
            "failure": experiment.failure_reason or "",
        })
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
