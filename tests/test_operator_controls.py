"""Human in the loop: approval before instruments run, pause and resume, budget changes, marking experiments bad.

Operators act through the campaign database (the CLI or another process), while the campaign runs.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.campaign import Campaign, CampaignError
from orchestrator.lab import Lab
from orchestrator.scheduler import Scheduler, ThreadExecutor
from orchestrator.simulated_lab import SimulatedLab
from orchestrator.spec import parse_campaign
from orchestrator.store import ExperimentStatus, Store
from tests.conftest import example_campaign

ROOT = Path(__file__).parent.parent


def campaign_data(name: str, experiments: int, **extra: object) -> dict:
    data = example_campaign(
        name=name, budget={"experiments": experiments, "batch_size": 1}, planner={"name": "sobol"}, **extra
    )
    data["simulation"]["time_factor"] = 1e-4
    return data


def run_in_thread(campaign: Campaign) -> threading.Thread:
    def run() -> None:
        executor = ThreadExecutor(poll_s=0.1)
        Scheduler(campaign, executor).run()
        executor.close()
        campaign.finish()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_until(predicate, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_no_instrument_runs_an_experiment_before_it_is_approved(tmp_path: Path) -> None:
    spec = parse_campaign(campaign_data("approval", 2, require_approval=True))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with SimulatedLab(spec, tmp_path / "tray"), Lab.from_spec(spec) as lab:
        campaign = Campaign.open(spec, Store(url), lab)
        thread = run_in_thread(campaign)
        operator = Store(url)  # the operator's own connection, as from another process
        wait_until(lambda: len(operator.experiments(campaign.id)) == 1)
        time.sleep(0.5)
        (waiting,) = operator.experiments(campaign.id)
        assert waiting.status == ExperimentStatus.PLANNED and not waiting.approved
        assert not (tmp_path / "tray").exists() or not any((tmp_path / "tray").glob("*.json")), "nothing made yet"
        assert Campaign(spec, operator, Lab({}), campaign.record).approve() == [0]
        wait_until(lambda: len(operator.experiments(campaign.id)) == 2)
        assert Campaign(spec, operator, Lab({}), campaign.record).approve() == [1]
        thread.join(timeout=60)
    experiments = operator.experiments(campaign.id)
    assert [e.status for e in experiments] == [ExperimentStatus.ANALYSED] * 2


def test_pause_then_resume_and_a_budget_raised_from_another_process(tmp_path: Path) -> None:
    spec = parse_campaign(campaign_data("pausing", 6))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with SimulatedLab(spec, tmp_path / "tray"), Lab.from_spec(spec) as lab:
        campaign = Campaign.open(spec, Store(url), lab)
        thread = run_in_thread(campaign)
        wait_until(lambda: len(campaign.experiments()) >= 2)
        campaign.pause()
        thread.join(timeout=60)
        assert not thread.is_alive()
        paused = campaign.experiments()
        assert 2 <= len(paused) < 6
        assert all(e.status in ExperimentStatus.TERMINAL for e in paused), "in-flight work finished before pausing"
        assert Store(url).campaign(campaign.id).status == "paused"

        result = subprocess.run(
            [sys.executable, "-m", "flows.cli", "budget", "pausing", "8", "--db", url],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        resumed = Campaign.open(spec, Store(url), lab, resume=True)
        thread = run_in_thread(resumed)
        thread.join(timeout=120)
    final = Store(url)
    assert [e.index for e in final.experiments(campaign.id)] == list(range(8))
    assert final.campaign(campaign.id).status == "finished"


def test_an_experiment_marked_bad_is_forgotten_by_the_planner(tmp_path: Path) -> None:
    spec = parse_campaign(campaign_data("marking", 3))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with SimulatedLab(spec, tmp_path / "tray"), Lab.from_spec(spec) as lab:
        campaign = Campaign.open(spec, Store(url), lab)
        run_in_thread(campaign).join(timeout=60)
    assert len(campaign.observations()) == 3
    campaign.mark_bad(1, "furnace thermocouple drifted")
    observed = [o.conditions for o in campaign.observations()]
    assert campaign.experiments()[1].conditions not in observed and len(observed) == 2
    assert campaign.experiments()[1].excluded_reason == "furnace thermocouple drifted"
    best = campaign.best()
    assert best is None or best.index != 1
    with pytest.raises(CampaignError, match="has no experiment 7"):
        campaign.mark_bad(7, "typo")
    with pytest.raises(CampaignError, match="already has 3 experiments"):
        campaign.set_budget(2)
