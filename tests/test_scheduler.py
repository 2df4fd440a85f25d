"""Several instruments of each kind kept busy at once, through real simulated instrument servers."""

from __future__ import annotations

import threading
from pathlib import Path

from orchestrator.campaign import Campaign, CampaignEvent
from orchestrator.lab import Lab
from orchestrator.scheduler import Scheduler, ThreadExecutor
from orchestrator.simulated_lab import SimulatedLab
from orchestrator.spec import parse_campaign
from orchestrator.store import ExperimentStatus, Store
from tests.conftest import example_campaign, free_tcp_address


def two_furnaces_one_xrd(name: str, experiments: int) -> dict:
    data = example_campaign(
        name=name,
        budget={"experiments": experiments, "batch_size": 1},
        planner={"name": "sobol", "initial_experiments": 2},
    )
    data["instruments"]["furnace-2"] = {"kind": "synthesiser", "address": free_tcp_address(), "timeout_s": 5}
    data["simulation"]["time_factor"] = 1e-4  # anneals of hours take tenths of a second
    return data


def test_two_synthesisers_work_at_once_and_measurement_overlaps_synthesis(tmp_path: Path) -> None:
    spec = parse_campaign(two_furnaces_one_xrd("parallel", experiments=6))
    busy: dict[str, int] = {}
    overlaps: list[tuple[str, ...]] = []
    lock = threading.Lock()

    def watch(event: CampaignEvent) -> None:
        with lock:
            if event.kind == "planned":
                busy[event.experiment_id] = 1
            elif event.kind in ("analysed", "failed"):
                busy.pop(event.experiment_id, None)
            overlaps.append(tuple(sorted(busy)))

    with SimulatedLab(spec, tmp_path / "tray"), Lab.from_spec(spec) as lab:
        campaign = Campaign.open(spec, Store(f"sqlite:///{tmp_path / 'c.db'}"), lab)
        campaign.observers.append(watch)
        executor = ThreadExecutor()
        Scheduler(campaign, executor).run()
        executor.close()

    experiments = campaign.experiments()
    assert [e.index for e in experiments] == list(range(6))
    assert all(e.status == ExperimentStatus.ANALYSED for e in experiments)
    made_on = {campaign.store.step_result(e.id, "synthesis").instrument for e in experiments}  # type: ignore[union-attr]
    assert made_on == {"furnace", "furnace-2"}, "both synthesisers were used"
    assert max(len(state) for state in overlaps) >= 2, "experiments were in flight at the same time"


def test_resume_sends_an_interrupted_job_back_to_its_instrument(tmp_path: Path) -> None:
    spec = parse_campaign(two_furnaces_one_xrd("pinned", experiments=2))
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    with SimulatedLab(spec, tmp_path / "tray"), Lab.from_spec(spec) as lab:
        campaign = Campaign.open(spec, store, lab)
        first = campaign.plan(1)[0]
        # The process "died" after recording that experiment 0 went onto furnace-2, before the reply came back.
        store.update_experiment(first, status=ExperimentStatus.RUNNING, step=0, instrument="furnace-2")
        resumed = Campaign.open(spec, store, lab, resume=True)
        executor = ThreadExecutor()
        Scheduler(resumed, executor).run()
        executor.close()
    assert store.step_result(first, "synthesis").instrument == "furnace-2"  # type: ignore[union-attr]
    assert [e.status for e in store.experiments(campaign.id)] == [ExperimentStatus.ANALYSED] * 2
