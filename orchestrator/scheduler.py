"""Keeps every instrument busy: while one sample is measured the next is made, whatever the workflow's steps.

One queue per workflow step. The scheduler hands each free instrument of the first step a new experiment (asking
the planner at that moment, with every experiment still under way passed as pending, and only while fewer than
``max_in_flight`` are under way, so the loop stays closed), each free instrument of a later step the next
experiment whose previous step ran, and the analysis slots the next reading to analyse. Every instrument kind is
scheduled the same way; the scheduler never knows what a step does. It runs the campaign's steps through a
:class:`StepExecutor`: plain threads here (:class:`ThreadExecutor`), Prefect tasks with retries in
:mod:`flows.campaign`.

Restart rules: experiments found ``planned`` wait for any instrument of the first step; those ``running`` a step
go back to the instrument they were on (it knows their job); those that ``ran`` step k wait for any instrument of
step k + 1, and their readings not yet analysed go to the analysis.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

from orchestrator.campaign import Campaign, InstrumentRefused
from orchestrator.store import ExperimentRecord, ExperimentStatus

__all__ = ["ANALYSE", "RUN", "Action", "Scheduler", "StepExecutor", "ThreadExecutor"]

RUN, ANALYSE = "run", "analyse"


@dataclass(frozen=True)
class Action:
    """What the scheduler starts: ``run`` step ``step`` on an instrument, or ``analyse`` its reading."""

    kind: str  # RUN | ANALYSE
    step: int
    step_name: str

    @property
    def label(self) -> str:
        """How the action is named in the Prefect UI: the step's name, or ``analyse-<step>``."""
        return self.step_name if self.kind == RUN else f"analyse-{self.step_name}"


class StepExecutor(Protocol):
    """Runs campaign steps concurrently and reports which finished first."""

    def plan(self, campaign: Campaign, n: int) -> list[str]:
        """Ask the planner for up to ``n`` experiments now (synchronously); return their ids (none if the budget
        is spent)."""
        ...

    def await_approval(self, campaign: Campaign, experiment_ids: list[str]) -> None:
        """Nothing else is under way and ``experiment_ids`` await an operator: wait for a decision (or a while)."""
        ...

    def submit(self, campaign: Campaign, action: Action, experiment_id: str, instrument: str | None) -> Hashable:
        """Start ``action`` for ``experiment_id`` (on ``instrument``) and return a handle."""
        ...

    def first_done(self, handles: list[Hashable]) -> Hashable:
        """Block until one of ``handles`` is finished and return it."""
        ...

    def error(self, handle: Hashable) -> BaseException | None:
        """The exception a finished step ended with, after any retries; None if it succeeded."""
        ...


@dataclass(frozen=True)
class _Job:
    action: Action
    experiment_id: str
    instrument: str | None


class Scheduler:
    """Drive a campaign to the end of its budget, keeping its instruments busy.

    Args:
        campaign: the campaign (its steps and its store).
        executor: how steps run (threads, Prefect tasks).
        analysis_slots: how many analyses may run at once (they use the CPU, not an instrument).

    Experiments in flight (planned, not yet analysed or failed) never exceed the campaign's ``max_in_flight``
    after the initial design: a free instrument of the first step waits for an analysis rather than plan blind.
    A paused campaign starts no new experiment and ends the run once what is on its instruments is recorded.
    """

    def __init__(self, campaign: Campaign, executor: StepExecutor, analysis_slots: int = 1) -> None:
        self.campaign = campaign
        self.executor = executor
        self.analysis_slots = analysis_slots
        self.steps = campaign.spec.steps()
        self.instruments = [campaign.spec.instruments_for(i) for i in range(len(self.steps))]

    def run(self) -> None:
        campaign = self.campaign
        steps = self.steps
        free = {name for names in self.instruments for name in names}
        waiting: list[deque[ExperimentRecord]] = [deque() for _ in steps]  # experiments ready for step k
        to_analyse: deque[tuple[str, int]] = deque()
        for experiment in campaign.unfinished():
            if experiment.status == ExperimentStatus.PLANNED:
                waiting[0].append(experiment)
            elif experiment.status == ExperimentStatus.RUNNING and experiment.step is not None:
                waiting[experiment.step].append(experiment)  # pinned to the instrument that has its job
            elif experiment.status == ExperimentStatus.RAN and experiment.step is not None:
                if experiment.step + 1 < len(steps):
                    waiting[experiment.step + 1].append(experiment)
            pending = campaign.pending_analyses(experiment)
            to_analyse.extend((experiment.id, k) for k in pending)
            if not pending:
                campaign.complete_if_done(experiment.id)  # a crash between the last record and the verdict
        running: dict[Hashable, _Job] = {}
        analysing = 0

        def start(action: Action, experiment_id: str, instrument: str | None) -> None:
            handle = self.executor.submit(campaign, action, experiment_id, instrument)
            running[handle] = _Job(action, experiment_id, instrument)
            if instrument is not None:
                free.discard(instrument)

        while True:
            campaign.refresh()  # an operator may have paused the campaign or changed its budget
            _drop_decided(campaign, waiting[0])  # an operator may have rejected an experiment awaiting approval
            awaiting_approval = any(not campaign.store.experiment(e.id).approved for e in waiting[0])
            for instrument in [s for s in self.instruments[0] if s in free and not campaign.paused]:
                experiment_id = _take(campaign, waiting[0], instrument, 0)
                room = 0 if experiment_id is not None or awaiting_approval else campaign.planning_room()
                if room > 0:  # otherwise the instrument waits for an analysis (the closed loop's bound)
                    for planned in self.executor.plan(campaign, min(campaign.spec.budget.batch_size, room)):
                        record = campaign.store.experiment(planned)
                        if record.approved and experiment_id is None:
                            experiment_id = planned
                        else:
                            waiting[0].append(record)
                            awaiting_approval = awaiting_approval or not record.approved
                if experiment_id is not None:
                    start(Action(RUN, 0, steps[0].name), experiment_id, instrument)
            for k in range(1, len(steps)):
                for instrument in [d for d in self.instruments[k] if d in free]:
                    experiment_id = _take(campaign, waiting[k], instrument, k)
                    if experiment_id is not None:
                        start(Action(RUN, k, steps[k].name), experiment_id, instrument)
            while to_analyse and analysing < self.analysis_slots:
                experiment_id, k = to_analyse.popleft()
                start(Action(ANALYSE, k, steps[k].name), experiment_id, None)
                analysing += 1
            if not running:
                if awaiting_approval and not campaign.paused:
                    # nothing to do until an operator approves (or rejects) the planned experiments
                    self.executor.await_approval(campaign, [e.id for e in waiting[0]])
                    continue
                break
            handle = self.executor.first_done(list(running))
            job = running.pop(handle)
            if job.instrument is not None:
                free.add(job.instrument)
            if job.action.kind == ANALYSE:
                analysing -= 1
            error = self.executor.error(handle)
            if isinstance(error, InstrumentRefused):
                continue  # the campaign paused with the reason; the experiment continues on resume
            if error is not None:
                campaign.fail(job.experiment_id, f"{job.action.label} failed: {error}")
                continue
            if job.action.kind == RUN:
                experiment = campaign.store.experiment(job.experiment_id)
                if experiment.status in ExperimentStatus.TERMINAL:
                    continue
                if steps[job.action.step].analysis is not None:
                    to_analyse.append((job.experiment_id, job.action.step))
                if job.action.step + 1 < len(steps):
                    waiting[job.action.step + 1].append(experiment)


def _drop_decided(campaign: Campaign, queue: deque[ExperimentRecord]) -> None:
    """Forget queued experiments that reached a final state while they waited (rejected by an operator)."""
    for experiment in list(queue):
        if campaign.store.experiment(experiment.id).status in ExperimentStatus.TERMINAL:
            queue.remove(experiment)


def _take(campaign: Campaign, queue: deque[ExperimentRecord], instrument: str, step: int) -> str | None:
    """Pop the first approved experiment that may run step ``step`` on ``instrument``: one already running that
    step on it, or not yet on any."""
    for experiment in list(queue):
        running_here = experiment.status == ExperimentStatus.RUNNING and experiment.step == step
        pinned = experiment.instrument if running_here else None
        if pinned in (None, instrument) and campaign.store.experiment(experiment.id).approved:
            queue.remove(experiment)
            return experiment.id
    return None


class ThreadExecutor:
    """Runs steps on a thread pool, without Prefect (tests, notebooks)."""

    def __init__(self, max_workers: int = 8, poll_s: float = 1.0) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers)
        self.poll_s = poll_s

    def plan(self, campaign: Campaign, n: int) -> list[str]:
        return campaign.plan(n)

    def await_approval(self, campaign: Campaign, experiment_ids: list[str]) -> None:
        time.sleep(self.poll_s)  # `crucible approve` (or reject) writes the decision to the store

    def submit(self, campaign: Campaign, action: Action, experiment_id: str, instrument: str | None) -> Hashable:
        if action.kind == ANALYSE:
            return self.pool.submit(campaign.analyse, experiment_id, action.step)
        return self.pool.submit(campaign.run_step, experiment_id, action.step, instrument)

    def first_done(self, handles: list[Hashable]) -> Hashable:
        done, _ = concurrent.futures.wait(handles, return_when=concurrent.futures.FIRST_COMPLETED)  # type: ignore[arg-type]
        return next(iter(done))

    def error(self, handle: Hashable) -> BaseException | None:
        return handle.exception()  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        self.pool.shutdown(wait=True)
