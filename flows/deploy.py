"""Scale-out on Prefect's own engine: campaign deployments on a work pool, experiments run by Prefect workers.

Two ways to deploy a campaign (``crucible deploy``, :func:`deploy_campaign`):

``distributed`` (default)
    ``crucible-distributed-campaign/<campaign>`` runs :func:`distributed_campaign_flow`, a coordinator that plans
    and hands every experiment to ``crucible-experiment/<campaign>`` (:func:`experiment_flow`) with
    ``run_deployment``. Each experiment is its own flow run, picked up by whichever worker of the pool is free, so
    several workers, on several hosts, share one campaign; up to ``parallel`` experiments are under way at once
    (the planner is told about them as pending points). Instruments are shared safely through Prefect global
    concurrency limits, one per instrument address with one slot (``crucible-instrument-<address>``): a step waits
    for its instrument instead of finding it busy.
``single``
    ``crucible-campaign/<campaign>`` runs :func:`flows.campaign.campaign_flow` whole, in one worker process.

Both deployments import their flow by module path (``flows.deploy.experiment_flow``), so a worker host needs
Crucible installed (the same version), not a copy of a directory. The campaign database must be one every worker
reaches: PostgreSQL for several hosts (a SQLite file only serves workers on the machine that holds it).

Restart rules of the coordinator: each experiment's flow run carries the idempotency key
``<experiment id>-<attempt>``, so re-running the coordinator after a crash finds the experiment runs already
under way instead of starting them twice; an experiment whose flow run ended (crashed, cancelled) without a final
record is dispatched again (the steps recover from the instruments' job ids) up to ``max_attempts`` times, then
recorded as failed.
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # before prefect is imported, as in flows.campaign

import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from contextlib import ExitStack  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Literal  # noqa: E402

from prefect import flow, get_run_logger  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.concurrency.sync import concurrency  # noqa: E402
from prefect.deployments import run_deployment  # noqa: E402

from flows.campaign import (  # noqa: E402
    _publish_artifacts,
    analyse_task,
    campaign_flow,
    plan_task,
    step_task,
)
from orchestrator.campaign import Campaign, CampaignError  # noqa: E402
from orchestrator.lab import Lab  # noqa: E402
from orchestrator.runner_lock import RunnerLock  # noqa: E402
from orchestrator.scheduler import ANALYSE, RUN, Action  # noqa: E402
from orchestrator.spec import CampaignSpec, parse_campaign  # noqa: E402
from orchestrator.store import ExperimentStatus, Store  # noqa: E402

__all__ = [
    "COORDINATOR_FLOW",
    "EXPERIMENT_FLOW",
    "SINGLE_FLOW",
    "DeployedCampaign",
    "deploy_campaign",
    "distributed_campaign_flow",
    "ensure_instrument_limits",
    "ensure_work_pool",
    "experiment_flow",
    "instrument_limit_name",
    "register_campaign",
    "run_experiment_steps",
    "start_campaign_run",
]

EXPERIMENT_FLOW = "crucible-experiment"
COORDINATOR_FLOW = "crucible-distributed-campaign"
SINGLE_FLOW = "crucible-campaign"
INSTRUMENT_POLL_S = 0.5  # how often an experiment looks again for a free instrument when several may serve it


def instrument_limit_name(address: str) -> str:
    """The global concurrency limit guarding the instrument at ``address`` (one job at a time, any worker)."""
    return "crucible-instrument-" + "-".join("".join(c if c.isalnum() else " " for c in address).split())


def ensure_instrument_limits(spec: CampaignSpec) -> list[str]:
    """Create (if missing) a one-slot global concurrency limit for every instrument of ``spec``; their names."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    names = sorted({instrument_limit_name(instrument.address) for instrument in spec.instruments.values()})
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
                except ObjectAlreadyExists:
                    pass
    return names


def ensure_work_pool(pool: str) -> bool:
    """Create the process work pool ``pool`` if it does not exist; whether it was created."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
            return False
        except ObjectNotFound:
            pass
        try:
            client.create_work_pool(
                WorkPoolCreate(
                    name=pool,
                    type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                    description="Crucible campaigns and experiments",
                )
            )
        except ObjectAlreadyExists:
            return False
    return True


def same_spec(stored_json: str, spec: CampaignSpec) -> bool:
    """Whether a stored campaign file and ``spec`` say the same, whatever the order of their keys."""
    return bool(json.loads(stored_json) == json.loads(spec.model_dump_json()))


# --- the flows that run on workers ---------------------------------------------------------------------------
def _free_slot(client: Any, limit: str) -> bool:
    """Whether the instrument limit ``limit`` has a free slot right now (a hint: another run may take it first)."""
    current = client.read_global_concurrency_limit_by_name(limit)
    return bool(current.active_slots < current.limit)


def _hold_instrument(stack: ExitStack, campaign: Campaign, experiment_id: str, step: int) -> str:
    """Wait for an instrument that may run workflow step ``step`` and hold its concurrency slot in ``stack``.

    An experiment already running that step on an instrument (its job is known there) waits for that one.
    Otherwise it takes the first of the step's instruments that shows a free slot, starting at a different one for
    each experiment; if another run takes that slot first, it waits its turn there.
    """
    spec = campaign.spec
    experiment = campaign.store.experiment(experiment_id)
    candidates = spec.instruments_for(step)
    running_here = experiment.status == ExperimentStatus.RUNNING and experiment.step == step
    if running_here and experiment.instrument in candidates:
        chosen = experiment.instrument
    else:
        shift = experiment.index % len(candidates)
        candidates = candidates[shift:] + candidates[:shift]
        chosen = candidates[0]
        if len(candidates) > 1:
            with get_client(sync_client=True) as client:
                limits = {n: instrument_limit_name(spec.instruments[n].address) for n in candidates}
                free: list[str] = []
                while not free:
                    free = [n for n in candidates if _free_slot(client, limits[n])]
                    if not free:
                        time.sleep(INSTRUMENT_POLL_S)
            chosen = free[0]
    assert chosen is not None
    limit = instrument_limit_name(spec.instruments[chosen].address)
    stack.enter_context(concurrency(limit, occupy=1, strict=True))
    return chosen


def _step_done(campaign: Campaign, experiment_id: str, step: int) -> bool:
    """Whether step ``step``'s job already ran for the experiment (a re-run after a crash skips it)."""
    experiment = campaign.store.experiment(experiment_id)
    return experiment.status == ExperimentStatus.RAN and experiment.step is not None and experiment.step >= step


def run_experiment_steps(campaign: Campaign, experiment_id: str) -> None:
    """Carry one experiment from wherever it stands to its record with the Prefect tasks of
    :mod:`flows.campaign` (same names, same retries): each workflow step in turn, holding its instrument's slot,
    then its analysis. A step that still fails after its retries fails the experiment (recorded, not raised), as
    the scheduler does.
    """
    label = f"{campaign.spec.name}-{campaign.store.experiment(experiment_id).index:03d}"
    for k, step in enumerate(campaign.steps):
        actions = [Action(RUN, k, step.name)] + ([Action(ANALYSE, k, step.name)] if step.analysis else [])
        for action in actions:
            if campaign.store.experiment(experiment_id).status in ExperimentStatus.TERMINAL:
                return
            if action.kind == RUN and _step_done(campaign, experiment_id, k):
                continue  # done before (a re-run after a crash): no instrument slot needed
            if action.kind == ANALYSE and step.name in campaign.store.step_analyses(experiment_id):
                continue
            with ExitStack() as stack:
                instrument = _hold_instrument(stack, campaign, experiment_id, k) if action.kind == RUN else None
                tags = [f"instrument:{instrument}"] if instrument else []
                name = f"{action.label}-{label}"
                try:
                    if action.kind == RUN:
                        step_task.with_options(task_run_name=name, tags=tags)(campaign, experiment_id, k, instrument)
                    else:
                        analyse_task.with_options(task_run_name=name, tags=tags)(campaign, experiment_id, k)
                except Exception as error:  # noqa: BLE001 - recorded as the experiment's failure, like the scheduler
                    get_run_logger().warning("experiment %s: %s failed: %s", label, action.label, error)
                    campaign.fail(experiment_id, f"{action.label} failed: {error}")
                    return
    campaign.complete_if_done(experiment_id)


@flow(name=EXPERIMENT_FLOW, validate_parameters=False)
def experiment_flow(campaign_name: str, experiment_id: str, database_url: str) -> dict[str, Any]:
    """Run every workflow step of one planned experiment of the campaign ``campaign_name`` and analyse it.

    The campaign file is read from the campaign database, so a worker needs only the database URL and network
    reach to the instruments. Steps already done are skipped (a re-run recovers, never repeats).
    """
    logger = get_run_logger()
    store = Store(database_url)
    try:
        record = store.campaign_by_name(campaign_name)
        if record is None:
            raise CampaignError(f"no campaign named {campaign_name!r} in {database_url}")
        spec = parse_campaign(json.loads(record.spec_json), f"campaign {campaign_name!r} in {database_url}")
        where = {"host": socket.gethostname(), "pid": os.getpid(), "worker": os.environ.get("PREFECT__WORKER_NAME")}
        with Lab.from_spec(spec) as lab:
            lab.use_leases(store.lease_tokens(spec.name))  # the coordinator holds the instruments and renews them
            # The constructor, not Campaign.open(resume=True): reopening must not set a paused campaign running.
            campaign = Campaign(spec, store, lab, record)
            experiment = store.experiment(experiment_id)
            logger.info(
                "experiment %s-%03d (%s) on host %s, pid %s, worker %s",
                campaign_name,
                experiment.index,
                experiment.status,
                where["host"],
                where["pid"],
                where["worker"],
            )
            run_experiment_steps(campaign, experiment_id)
            experiment = store.experiment(experiment_id)
        return {"experiment_id": experiment_id, "index": experiment.index, "status": experiment.status, **where}
    finally:
        store.close()


@flow(name=COORDINATOR_FLOW, flow_run_name="{campaign_name}", validate_parameters=False)
def distributed_campaign_flow(
    campaign_name: str,
    spec: dict[str, Any],
    database_url: str,
    experiment_deployment: str,
    parallel: int = 2,
    poll_interval_s: float = 2.0,
    max_attempts: int = 3,
) -> dict[str, Any]:
    """Plan the campaign ``spec`` and run its experiments as flow runs of ``experiment_deployment`` on workers.

    Keeps up to ``parallel`` experiments under way and asks the planner for one more (those under way passed as
    pending) whenever one finishes, until the budget is spent. Honours the operator's controls as the scheduler
    does: a paused campaign starts nothing new and the run ends once what is under way is recorded; planned
    experiments awaiting approval are not dispatched (and nothing more is planned) until approved; a changed
    budget counts from the next plan. Ends by publishing the same artifacts as :func:`campaign_flow`. A campaign
    that exists already is resumed (a different campaign file under the same name is refused).
    """
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, not {parallel}")
    logger = get_run_logger()
    campaign_spec = parse_campaign(spec, campaign_name)
    store = Store(database_url)
    ensure_instrument_limits(campaign_spec)
    holder = f"crucible campaign {campaign_spec.name} (coordinator {socket.gethostname()}:{os.getpid()})"
    with RunnerLock(store, campaign_spec.name), Lab.from_spec(campaign_spec, holder, heartbeat_s=2.0) as lab:
        lab.check()
        existing = store.campaign_by_name(campaign_spec.name)
        same = existing is not None and same_spec(existing.spec_json, campaign_spec)
        if same:  # the stored file keeps its order (Prefect on PostgreSQL keeps parameters as JSONB, key-sorted)
            campaign_spec = parse_campaign(json.loads(existing.spec_json), campaign_name)  # type: ignore[union-attr]
        campaign = Campaign.open(campaign_spec, store, lab, resume=same)
        attempts: Counter[str] = Counter()
        in_flight: dict[str, Any] = {}  # experiment id -> its flow run

        def dispatch(experiment: Any) -> None:
            in_flight[experiment.id] = run_deployment(
                experiment_deployment,
                parameters={
                    "campaign_name": campaign_spec.name,
                    "experiment_id": experiment.id,
                    "database_url": database_url,
                },
                flow_run_name=f"{campaign_spec.name}-{experiment.index:03d}",
                idempotency_key=f"{experiment.id}-{attempts[experiment.id]}",
                tags=["crucible", f"campaign:{campaign_spec.name}"],
                timeout=0,
            )

        campaign.lease_instruments()  # held (and renewed) by the coordinator; workers run jobs under its tokens
        try:
            with get_client(sync_client=True) as client:
                while True:
                    campaign.refresh()  # an operator may have paused the campaign or changed its budget
                    waiting = [e for e in campaign.unfinished() if e.id not in in_flight]
                    awaiting_approval = any(not e.approved for e in waiting)
                    ready = [e for e in waiting if e.approved]
                    while not campaign.paused and len(in_flight) < parallel:
                        if ready:
                            dispatch(ready.pop(0))
                            continue
                        if awaiting_approval or campaign.planning_room() <= 0:  # budget spent, or the loop's bound
                            break
                        label = f"{campaign_spec.name}-{len(campaign.experiments()):03d}"
                        planned = plan_task.with_options(task_run_name=f"plan-{label}")(campaign, 1)
                        if not planned:
                            break
                        for experiment_id in planned:
                            record = store.experiment(experiment_id)
                            if record.approved:
                                ready.append(record)
                            else:
                                awaiting_approval = True
                    if not in_flight and not (awaiting_approval and not campaign.paused):
                        break  # budget spent (or paused) and nothing under way
                    time.sleep(poll_interval_s)
                    for experiment_id, run in list(in_flight.items()):
                        state = client.read_flow_run(run.id).state
                        if state is None or not state.is_final():
                            continue
                        del in_flight[experiment_id]
                        experiment = store.experiment(experiment_id)
                        if experiment.status in ExperimentStatus.TERMINAL:
                            continue
                        attempts[experiment_id] += 1
                        if attempts[experiment_id] < max_attempts:
                            logger.warning(
                                "experiment %s-%03d: flow run %s ended %s at %s; dispatching it again",
                                campaign_name,
                                experiment.index,
                                run.name,
                                state.type.value,
                                experiment.status,
                            )
                        else:
                            campaign.fail(
                                experiment_id,
                                f"its flow run {run.name} ended {state.type.value} at "
                                f"{experiment.status}, {attempts[experiment_id]} times",
                            )
        finally:
            campaign.release_instruments()
        campaign.finish()
        _publish_artifacts(campaign)
        summary = campaign.summary()
    store.close()
    return summary


# --- registering deployments ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeployedCampaign:
    """What :func:`deploy_campaign` registered: run ``campaign_deployment`` to start (or resume) the campaign."""

    campaign_deployment: str
    experiment_deployment: str | None
    work_pool: str
    database_url: str
    instrument_limits: list[str]


def absolute_database_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute (workers do not run in the deployer's directory)."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return f"sqlite:///{Path(url.removeprefix('sqlite:///')).resolve()}"
    return url


def register_campaign(spec: CampaignSpec, database_url: str, *, fresh: bool = False) -> None:
    """Write the campaign into its database now, so every run of its deployment opens it by resuming.

    Refuses (:class:`CampaignError`) a different campaign file under a name the database already holds, unless
    ``fresh`` replaces it. Touches no instrument.
    """
    store = Store(database_url)
    try:
        existing = store.campaign_by_name(spec.name)
        if existing is not None and fresh:
            store.delete_campaign(existing.id)
            existing = None
        if existing is None:
            with Lab.from_spec(spec) as lab:  # clients connect lazily: nothing is contacted here
                Campaign.open(spec, store, lab)
        elif not same_spec(existing.spec_json, spec):
            raise CampaignError(
                f"a different campaign named {spec.name!r} already exists in {store.url}; "
                "rename it or pass --fresh to replace it"
            )
    finally:
        store.close()


def deploy_campaign(
    spec: CampaignSpec,
    database_url: str,
    work_pool: str,
    *,
    mode: Literal["distributed", "single"] = "distributed",
    parallel: int = 2,
    fresh: bool = False,
) -> DeployedCampaign:
    """Register the deployments of campaign ``spec`` on ``work_pool`` (created as a process pool if missing).

    Args:
        database_url: the campaign database every worker uses (PostgreSQL across hosts).
        mode: ``distributed`` (experiments as separate flow runs) or ``single`` (the whole campaign in one).
        parallel: experiments under way at once (``distributed``).
        fresh: delete an earlier campaign of the same name from the database now.

    The campaign is written into the database here (:func:`register_campaign`): running its deployment starts
    it the first time and resumes it after that (nothing recorded is lost or repeated).
    """
    from prefect.deployments.runner import EntrypointType

    database_url = absolute_database_url(database_url)
    register_campaign(spec, database_url, fresh=fresh)
    ensure_work_pool(work_pool)
    limits = ensure_instrument_limits(spec)
    payload = spec.model_dump(mode="json")
    tags = ["crucible", f"campaign:{spec.name}"]
    if mode == "single":
        deployment = campaign_flow.to_deployment(
            name=spec.name,
            parameters={"campaign_name": spec.name, "spec": payload, "database_url": database_url, "resume": False},
            tags=tags,
            entrypoint_type=EntrypointType.MODULE_PATH,
            description=f"Campaign {spec.name}, whole",
        )
        deployment.apply(work_pool_name=work_pool)
        return DeployedCampaign(f"{SINGLE_FLOW}/{spec.name}", None, work_pool, database_url, limits)
    if mode != "distributed":
        raise ValueError(f"mode must be 'distributed' or 'single', not {mode!r}")
    experiment = experiment_flow.to_deployment(
        name=spec.name,
        tags=tags,
        entrypoint_type=EntrypointType.MODULE_PATH,
        description=f"One experiment of campaign {spec.name}: {' -> '.join(s.name for s in spec.steps())}, analysed",
    )
    experiment.apply(work_pool_name=work_pool)
    experiment_name = f"{EXPERIMENT_FLOW}/{spec.name}"
    coordinator = distributed_campaign_flow.to_deployment(
        name=spec.name,
        parameters={
            "campaign_name": spec.name,
            "spec": payload,
            "database_url": database_url,
            "experiment_deployment": experiment_name,
            "parallel": parallel,
        },
        tags=tags,
        entrypoint_type=EntrypointType.MODULE_PATH,
        description=f"Campaign {spec.name}: plans, and runs each experiment on a worker of {work_pool}",
    )
    coordinator.apply(work_pool_name=work_pool)
    return DeployedCampaign(f"{COORDINATOR_FLOW}/{spec.name}", experiment_name, work_pool, database_url, limits)


def start_campaign_run(deployment: str, campaign_name: str | None = None) -> Any:
    """Create a flow run of ``deployment`` (a worker of its pool picks it up); the flow run."""
    return run_deployment(deployment, timeout=0, as_subflow=False, flow_run_name=campaign_name)
