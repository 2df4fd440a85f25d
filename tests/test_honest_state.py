"""Issue 15: honest state everywhere. A paused campaign ends its run as paused (the CLI says so, the Prefect flow run
ends Cancelled with a message); the progress bar follows `crucible budget`; `crucible status` shows experiments
awaiting approval and marked bad, and an ETA; resuming a finished campaign says so without starting a lab; and an
approval decision reaches the campaign through Prefect's pause/resume input form as well as through the CLI."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.campaign import Campaign
from orchestrator.lab import Lab
from orchestrator.simulated_lab import SimulatedLab
from orchestrator.spec import parse_campaign
from orchestrator.store import ExperimentStatus, Store
from tests.conftest import crucible, example_campaign, start_crucible

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.usefixtures("prefect_api_env")  # one Prefect server for the CLI runs


def wait_until(predicate: Callable[[], bool], timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def slow_sobol_campaign(name: str, experiments: int, **extra: Any) -> dict[str, Any]:
    data = example_campaign(
        name=name, budget={"experiments": experiments, "batch_size": 1}, planner={"name": "sobol"}, **extra
    )
    data["simulation"]["time_factor"] = 2e-4  # an anneal of hours takes a second or two
    return data


def analysed(url: str, name: str) -> int:
    store = Store(url)
    try:
        record = store.campaign_by_name(name)
        return 0 if record is None else sum(e.status == "analysed" for e in store.experiments(record.id))
    finally:
        store.close()


def test_cli_pause_budget_resume_and_a_finished_campaign(tmp_path: Path) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(slow_sobol_campaign("honest", 4)))
    url = f"sqlite:///{tmp_path / 'runs' / 'crucible.db'}"
    run = start_crucible("run", str(path), "--sim", "--runs-dir", "runs", cwd=tmp_path)
    try:
        wait_until(lambda: analysed(url, "honest") >= 1)
        # a budget well above what can finish while two CLI calls start (each imports for seconds, longer on a busy
        # machine), so the pause lands mid-campaign
        raised = crucible("budget", "honest", "8", "--runs-dir", "runs", cwd=tmp_path)
        assert raised.returncode == 0, raised.stderr
        paused = crucible("pause", "honest", "--runs-dir", "runs", cwd=tmp_path)
        assert paused.returncode == 0, paused.stderr
        out, err = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    assert "paused by an operator after" in out and "crucible resume honest" in out, out
    assert "best conditions found" not in out, "a paused campaign is not summarised as if it had finished"
    assert "/8" in out, "the progress bar's total follows the raised budget"

    status = crucible("status", "--runs-dir", "runs", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "honest: paused" in status.stdout and "of 8 experiments done" in status.stdout, status.stdout

    resumed = crucible("resume", "honest", "--sim", "--runs-dir", "runs", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "best conditions found" in resumed.stdout and "8/8" in resumed.stdout, resumed.stdout

    again = crucible("resume", "honest", "--sim", "--runs-dir", "runs", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "campaign honest is finished: 8 experiments" in again.stdout, again.stdout
    assert "simulated lab up" not in again.stdout, "no lab is started for a finished campaign"


def test_status_shows_awaiting_approval_marked_bad_and_an_eta(tmp_path: Path) -> None:
    spec = parse_campaign(slow_sobol_campaign("watched", 5, require_approval=True))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    campaign = Campaign.open(spec, Store(url), Lab({}))
    first, second, third = (campaign.plan(1)[0] for _ in range(3))
    campaign.approve([0, 1])
    outcomes = {
        "anatase_crystallite_size_nm": {"value": 21.0, "std": 0.2},
        "rutile_fraction": {"value": 0.02, "std": 0.01},
    }
    campaign.store.update_experiment(first, status=ExperimentStatus.ANALYSED, outcomes_json=json.dumps(outcomes))
    campaign.fail(second, "furnace tripped")
    campaign.mark_bad(0, "crucible cracked")
    result = crucible("status", "watched", "--db", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "awaiting approval" in out and "marked bad: crucible cracked" in out and "furnace tripped" in out, out
    assert "watched: running, 2 of 5 experiments done" in out and "1 awaiting approval" in out, out
    assert "1 marked bad" in out and "eta" in out, out
    rejected = crucible("reject", "watched", "2", "--reason", "too hot for the crucible", "--db", url, cwd=tmp_path)
    assert rejected.returncode == 0 and "rejected experiments [2]" in rejected.stdout, rejected.stderr
    assert Store(url).experiment(third).status == ExperimentStatus.REJECTED
    assert campaign.remaining_budget() == 3, "a rejected proposal costs no budget"


def run_flow_in_thread(data: dict[str, Any], url: str) -> tuple[threading.Thread, dict[str, Any]]:
    from flows.campaign import campaign_flow

    spec = parse_campaign(data)
    result: dict[str, Any] = {}

    def run() -> None:
        result["state"] = campaign_flow(
            spec.name, spec.model_dump(mode="json"), url, approval_poll_s=0.5, return_state=True
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_a_paused_campaign_ends_its_flow_run_cancelled_with_a_message(tmp_path: Path, prefect_harness: None) -> None:
    data = slow_sobol_campaign("flow-paused", 6)
    spec = parse_campaign(data)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with SimulatedLab(spec, tmp_path / "tray"):
        thread, result = run_flow_in_thread(data, url)
        wait_until(lambda: analysed(url, "flow-paused") >= 1)
        store = Store(url)
        record = store.campaign_by_name("flow-paused")
        assert record is not None
        store.update_campaign(record.id, status="paused")  # as `crucible pause` does
        thread.join(timeout=120)
    state = result["state"]
    assert state.is_cancelled(), state
    assert "paused by an operator" in state.message and "crucible resume flow-paused" in state.message
    assert Store(url).campaign(record.id).status == "paused"


def paused_run(name: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs() if r.name == name and r.state is not None and r.state.is_paused()]
        return runs[0] if runs else None


def test_approval_through_the_prefect_input_form_and_the_cli(tmp_path: Path, prefect_harness: None) -> None:
    from prefect.flow_runs import resume_flow_run
    from prefect.input.actions import read_flow_run_input

    data = slow_sobol_campaign("approved", 2, require_approval=True)
    spec = parse_campaign(data)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = Store(url)
    with SimulatedLab(spec, tmp_path / "tray"):
        thread, result = run_flow_in_thread(data, url)
        wait_until(lambda: paused_run("approved") is not None)
        run = paused_run("approved")
        keyset = run.state.state_details.run_input_keyset
        form = read_flow_run_input(keyset["description"], flow_run_id=run.id)
        assert "proposes 1 experiment" in form and "| 0 |" in form and "anneal_temperature_c [degC]" in form, form
        schema = read_flow_run_input(keyset["schema"], flow_run_id=run.id)
        assert {"approve", "reject", "reason"} <= set(schema["properties"]), schema

        # the UI's answer: reject experiment 0 with a reason; the planner proposes a replacement, and pauses again
        resume_flow_run(run.id, run_input={"approve": [], "reject": [0], "reason": "too close to the last batch"})
        wait_until(lambda: len(store.experiments(store.campaign_by_name("approved").id)) == 2)  # type: ignore[union-attr]
        wait_until(lambda: paused_run("approved") is not None)
        run = paused_run("approved")
        resume_flow_run(run.id, run_input={"approve": [1], "reject": [], "reason": ""})

        # the last one is approved with the CLI while the flow run is paused: the flow run resumes by itself
        wait_until(lambda: len(store.experiments(store.campaign_by_name("approved").id)) == 3)  # type: ignore[union-attr]
        wait_until(lambda: paused_run("approved") is not None)
        approved = crucible("approve", "approved", "2", "--db", url, cwd=tmp_path)
        assert approved.returncode == 0 and "approved experiments [2]" in approved.stdout, approved.stderr
        thread.join(timeout=180)
    assert not thread.is_alive()
    assert result["state"].is_completed(), result["state"]
    experiments = store.experiments(store.campaign_by_name("approved").id)  # type: ignore[union-attr]
    assert [e.status for e in experiments] == [ExperimentStatus.REJECTED, ExperimentStatus.ANALYSED, "analysed"]
    assert experiments[0].failure_reason == "rejected: too close to the last batch"
    assert not store.step_results(experiments[0].id), "a rejected experiment never reached an instrument"
