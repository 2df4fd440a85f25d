"""A campaign with every simulated fault enabled at 10 % completes its budget, every experiment accounted for."""

from __future__ import annotations

from pathlib import Path

from orchestrator.simulated_lab import SimulatedLab
from orchestrator.spec import parse_campaign
from orchestrator.store import ExperimentStatus, Store
from tests.conftest import example_campaign

BUDGET = 12


def test_every_fault_at_ten_percent(tmp_path: Path, prefect_harness: None) -> None:
    from flows.campaign import campaign_flow

    data = example_campaign(
        name="faulty",
        budget={"experiments": BUDGET, "batch_size": 1},
        planner={"name": "sobol"},
    )
    for instrument in data["instruments"].values():
        instrument["timeout_s"] = 2.0
    data["simulation"]["time_factor"] = 2e-5
    data["simulation"]["faults"] = {
        "timeout_probability": 0.1,
        "death_probability": 0.1,
        "error_probability": 0.1,
        "corruption_probability": 0.1,
        "truncation_probability": 0.1,
        "drift_probability": 0.1,
        "hang_s": 2.0,
    }
    spec = parse_campaign(data)
    url = f"sqlite:///{tmp_path / 'faulty.db'}"
    with SimulatedLab(spec, tmp_path / "tray") as lab:
        summary = campaign_flow("faulty", spec.model_dump(mode="json"), url)
        restarts = dict(lab.restarts)

    store = Store(url)
    record = store.campaign_by_name("faulty")
    assert record is not None and record.status == "finished"
    experiments = store.experiments(record.id)
    assert [e.index for e in experiments] == list(range(BUDGET)), "experiments lost or duplicated"
    assert summary["experiments"] == BUDGET
    failed = [e for e in experiments if e.status == ExperimentStatus.FAILED]
    done = [e for e in experiments if e.status == ExperimentStatus.ANALYSED]
    assert len(failed) + len(done) == BUDGET
    assert all(e.failure_reason for e in failed), "every failure names its reason"
    assert failed, "with six fault types at 10 % some experiment fails"
    assert done, "and most still succeed"
    for experiment in done:
        assert store.step_result(experiment.id, "synthesis") and store.step_result(experiment.id, "xrd")
        assert "xrd" in store.step_analyses(experiment.id)
    # An instrument process died and was restarted; the experiment it held was retried, not lost.
    assert sum(restarts.values()) >= 1, restarts
