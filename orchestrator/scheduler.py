"""Keeps every instrument busy: while one sample is measured the next is made.

The scheduler hands each free synthesiser a new experiment (asking the planner at that moment, with every
experiment still under way passed as pending, and only while fewer than ``max_in_flight`` are under way, so the
loop stays closed), each free diffractometer the next made sample, and the analysis the
next measured pattern. It runs the campaign's steps through a :class:`StepExecutor`: plain threads here
(:class:`ThreadExecutor`), Prefect tasks with retries in :mod:`flows.campaign`.

Restart rules: experiments found ``planned`` wait for any synthesiser; ``synthesising`` and ``measuring`` ones go
back to the instrument they were on (it knows their job); ``made`` wait for any diffractometer; ``measured`` for
the analysis.
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

__all__ = ["Scheduler", "StepExecutor", "ThreadExecutor"]

SYNTHESISE, CHARACTERISE, ANALYSE = "synthesise", "characterise", "analyse"


class StepExecutor(Protocol):
    """Runs campaign steps concurrently and reports which finished first."""

    def plan(self, campaign: Campaign, n: int) -> list[str]:
        """Ask the planner for up to ``n`` experiments now (synchronously); return their ids (none if the budget
        is spent)."""
        ...

    def await_approval(self, campaign: Campaign, experiment_ids: list[str]) -> None:
        """Nothing else is under way and ``experiment_ids`` await an operator: wait for a decision (or a while)."""
        ...

    def submit(self, campaign: Campaign, step: str, experiment_id: str, instrument: str | None) -> Hashable:
        """Start ``step`` of ``experiment_id`` (on ``instrument``) and return a handle."""
        ...

    def first_done(self, handles: list[Hashable]) -> Hashable:
        """Block until one of ``handles`` is finished and return it."""
        ...

    def error(self, handle: Hashable) -> BaseException | None:
        """The exception a finished step ended with, after any retries; None if it succeeded."""
        ...


@dataclass(frozen=True)
class _Job:
    step: str
    experiment_id: str
    instrument: str | None


class Scheduler:
    """Drive a campaign to the end of its budget, keeping its instruments busy.

    Args:
        campaign: the campaign (its steps and its store).
        executor: how steps run (threads, Prefect tasks).
        analysis_slots: how many analyses may run at once (they use the CPU, not an instrument).

    Experiments in flight (planned, not yet analysed or failed) never exceed the campaign's ``max_in_flight``
    after the initial design: a free synthesiser waits for an analysis rather than plan blind.
    A paused campaign starts no new experiment and ends the run once what is on its instruments is recorded.
    """

    def __init__(self, campaign: Campaign, executor: StepExecutor, analysis_slots: int = 1) -> None:
        self.campaign = campaign
        self.executor = executor
        self.analysis_slots = analysis_slots
        kinds = {name: spec.kind for name, spec in campaign.spec.instruments.items()}
        self.synthesisers = [name for name, kind in kinds.items() if kind == "synthesiser"]
        self.diffractometers = [name for name, kind in kinds.items() if kind == "diffractometer"]

    def run(self) -> None:
        campaign = self.campaign
        free = set(self.synthesisers) | set(self.diffractometers)
        to_make: deque[ExperimentRecord] = deque()
        to_measure: deque[ExperimentRecord] = deque()
        to_analyse: deque[str] = deque()
        for experiment in campaign.unfinished():
            if experiment.status in (ExperimentStatus.PLANNED, ExperimentStatus.SYNTHESISING):
                to_make.append(experiment)
            elif experiment.status in (ExperimentStatus.MADE, ExperimentStatus.MEASURING):
                to_measure.append(experiment)
            else:
                to_analyse.append(experiment.id)
        running: dict[Hashable, _Job] = {}
        analysing = 0

        def start(step: str, experiment_id: str, instrument: str | None) -> None:
            handle = self.executor.submit(campaign, step, experiment_id, instrument)
            running[handle] = _Job(step, experiment_id, instrument)
            if instrument is not None:
                free.discard(instrument)

        while True:
            campaign.refresh()  # an operator may have paused the campaign or changed its budget
            _drop_decided(campaign, to_make)  # an operator may have rejected an experiment awaiting approval
            awaiting_approval = any(not campaign.store.experiment(e.id).approved for e in to_make)
            for synthesiser in [s for s in self.synthesisers if s in free and not campaign.paused]:
                experiment_id = _take(campaign, to_make, synthesiser, ExperimentStatus.SYNTHESISING)
                room = 0 if experiment_id is not None or awaiting_approval else campaign.planning_room()
                if room > 0:  # otherwise the synthesiser waits for an analysis (the closed loop's bound)
                    for planned in self.executor.plan(campaign, min(campaign.spec.budget.batch_size, room)):
                        record = campaign.store.experiment(planned)
                        if record.approved and experiment_id is None:
                            experiment_id = planned
                        else:
                            to_make.append(record)
                            awaiting_approval = awaiting_approval or not record.approved
                if experiment_id is not None:
                    start(SYNTHESISE, experiment_id, synthesiser)
            for diffractometer in [d for d in self.diffractometers if d in free]:
                experiment_id = _take(campaign, to_measure, diffractometer, ExperimentStatus.MEASURING)
                if experiment_id is not None:
                    start(CHARACTERISE, experiment_id, diffractometer)
            while to_analyse and analysing < self.analysis_slots:
                start(ANALYSE, to_analyse.popleft(), None)
                analysing += 1
            if not running:
                if awaiting_approval and not campaign.paused:
                    # nothing to do until an operator approves (or rejects) the planned experiments
                    self.executor.await_approval(campaign, [e.id for e in to_make])
                    continue
                break
            handle = self.executor.first_done(list(running))
            job = running.pop(handle)
            if job.instrument is not None:
                free.add(job.instrument)
            if job.step == ANALYSE:
                analysing -= 1
            error = self.executor.error(handle)
            if isinstance(error, InstrumentRefused):
                continue  # the campaign paused with the reason; the experiment continues on resume
            if error is not None:
                campaign.fail(job.experiment_id, f"{job.step} failed: {error}")
                continue
            if job.step == SYNTHESISE:
                to_measure.append(campaign.store.experiment(job.experiment_id))
            elif job.step == CHARACTERISE:
                to_analyse.append(job.experiment_id)


def _drop_decided(campaign: Campaign, queue: deque[ExperimentRecord]) -> None:
    """Forget queued experiments that reached a final state while they waited (rejected by an operator)."""
    for experiment in list(queue):
        if campaign.store.experiment(experiment.id).status in ExperimentStatus.TERMINAL:
            queue.remove(experiment)


def _take(campaign: Campaign, queue: deque[ExperimentRecord], instrument: str, on_instrument_status: str) -> str | None:
    """Pop the first approved experiment that may run on ``instrument``: one already on it, or on none yet."""
    for experiment in list(queue):
        pinned = experiment.instrument if experiment.status == on_instrument_status else None
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

    def submit(self, campaign: Campaign, step: str, experiment_id: str, instrument: str | None) -> Hashable:
        if step == ANALYSE:
            return self.pool.submit(campaign.analyse, experiment_id)
        method = campaign.synthesise if step == SYNTHESISE else campaign.characterise
        return self.pool.submit(method, experiment_id, instrument)

    def first_done(self, handles: list[Hashable]) -> Hashable:
        done, _ = concurrent.futures.wait(handles, return_when=concurrent.futures.FIRST_COMPLETED)  # type: ignore[arg-type]
        return next(iter(done))

    def error(self, handle: Hashable) -> BaseException | None:
        return handle.exception()  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        self.pool.shutdown(wait=True)
