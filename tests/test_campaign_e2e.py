"""A short closed-loop campaign through real ZeroMQ instrument servers and a real SQLite file, with and without
Prefect; and the CLI's one-line errors for bad campaign files and silent instruments."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.campaign import Campaign, CampaignError
from orchestrator.lab import Lab
from orchestrator.simulated_lab import SimulatedLab
from orchestrator.spec import parse_campaign
from orchestrator.store import ExperimentStatus, Store
from tests.conftest import example_campaign

CRUCIBLE = [sys.executable, "-m", "flows.cli"]


def short_campaign(name: str, experiments: int, initial: int) -> dict[str, Any]:
    return example_campaign(
        name=name,
        budget={"experiments": experiments, "batch_size": 1},
        planner={"name": "botorch", "initial_experiments": initial, "raw_samples": 32, "num_restarts": 2},
    )


def run_to_budget(campaign: Campaign) -> None:
    """Plan, synthesise, characterise and analyse, one step after another, until the budget is spent."""
    while campaign.remaining_budget() > 0:
        for experiment_id in campaign.plan():
            for step in range(len(campaign.steps)):
                campaign.run_step(experiment_id, step)
            campaign.analyse(experiment_id)


def test_campaign_steps_through_zeromq_servers_and_sqlite(tmp_path: Path) -> None:
    spec = parse_campaign(short_campaign("steps", experiments=5, initial=4))
    url = f"sqlite:///{tmp_path / 'campaign.db'}"
    with SimulatedLab(spec, tmp_path / "tray"), Lab.from_spec(spec) as lab:
        described = lab.check()
        assert {d["kind"] for d in described.values()} == {"synthesiser", "diffractometer"}
        campaign = Campaign.open(spec, Store(url), lab)
        run_to_budget(campaign)
        campaign.finish()

    assert (tmp_path / "campaign.db").stat().st_size > 0
    reopened = Store(url)  # a fresh connection reads back everything that was recorded
    record = reopened.campaign_by_name("steps")
    assert record is not None and record.status == "finished"
    experiments = reopened.experiments(record.id)
    assert [e.index for e in experiments] == [0, 1, 2, 3, 4]
    assert all(e.status == ExperimentStatus.ANALYSED for e in experiments)
    # Sobol points at seed 7 include anneals that leave no anatase: its size is undetermined (NaN), and the
    # planner learns those as infeasible rather than as numbers.
    assert any(math.isnan(e.outcomes["xrd.anatase_crystallite_size_nm"]["value"]) for e in experiments)
    strategies = [reopened.proposal(e.id).strategy for e in experiments]  # type: ignore[union-attr]
    assert strategies == ["sobol"] * 4 + ["qLogNEI"], strategies
    for experiment in experiments:
        sample = reopened.step_result(experiment.id, "synthesis")
        reading = reopened.step_result(experiment.id, "xrd")
        assert sample is not None and sample.sample_id == experiment.sample_id and sample.reading is None
        assert reading is not None and reading.reading_kind == "diffractogram"
        assert reading.reading is not None and reading.reading["sample_id"] == experiment.sample_id
        assert set(reopened.step_analyses(experiment.id)) == {"xrd"}
        fraction = experiment.outcomes["xrd.rutile_fraction"]
        assert 0.0 <= fraction["value"] <= 1.0 and math.isfinite(fraction["std"])
        low, high = 400.0, 1000.0
        assert low <= experiment.conditions["anneal_temperature_c"] <= high
    # Re-running a finished step is a no-op: nothing is measured twice.
    with Lab.from_spec(spec) as lab:
        again = Campaign(spec, reopened, lab, record)
        again.run_step(experiments[0].id, 0)
        results = reopened.step_results(experiments[0].id)
        assert [r.job_id for r in results] == [f"{experiments[0].id}-synthesis", f"{experiments[0].id}-xrd"]


def test_campaign_analysed_by_the_network_feeds_its_uncertainty_to_the_planner(tmp_path: Path) -> None:
    """``analysis.xrd.method: network``: the trained ensemble replaces the fit in the loop, its standard deviations
    become the planner's observation noise, and its numbers agree with the scenario's ground truth."""
    from sim_lab.scenarios import SCENARIOS

    data = short_campaign("network", experiments=5, initial=4)
    data["analysis"]["xrd"].update(method="network", model="tio2_calcination")
    spec = parse_campaign(data)
    url = f"sqlite:///{tmp_path / 'campaign.db'}"
    with SimulatedLab(spec, tmp_path / "tray"), Lab.from_spec(spec) as lab:
        campaign = Campaign.open(spec, Store(url), lab)
        run_to_budget(campaign)
        told = list(campaign.planner.observations)
    store = Store(url)
    experiments = store.experiments(store.campaign_by_name("network").id)  # type: ignore[union-attr]
    truth = SCENARIOS["tio2_calcination"]()
    assert len(experiments) == 5
    for experiment in experiments:
        assert store.step_analyses(experiment.id)["xrd"].agent == "xrd-network"
        rutile = experiment.outcomes["xrd.rutile_fraction"]
        assert 0.0 < rutile["std"] < 0.1
        assert rutile["value"] == pytest.approx(truth.quantities(experiment.conditions)["rutile_fraction"], abs=0.05)
    noisy = [o for o in told if o.variances]
    assert noisy, "the planner was told the network's variances"
    for observation in noisy:
        assert observation.variances["rutile_fraction"] > 0  # type: ignore[index]


def test_network_analysis_must_match_the_campaign_phases(tmp_path: Path) -> None:
    data = short_campaign("mismatch", experiments=2, initial=2)
    data["analysis"]["xrd"] = {"phases": ["anatase"], "method": "network"}
    with pytest.raises(ValueError, match="needs a model"):
        parse_campaign(data)
    data["analysis"]["xrd"] = {"phases": ["anatase"], "method": "network", "model": "tio2_calcination"}
    data["objectives"] = [{"name": "anatase_crystallite_size_nm", "direction": "maximize"}]
    data["constraints"] = []
    spec = parse_campaign(data)
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(CampaignError, match="trained on phases"):
        Campaign.open(spec, store, Lab.from_spec(spec))
    assert store.campaign_by_name("mismatch") is None, "nothing is recorded for a campaign that cannot start"


def test_prefect_flow_runs_the_campaign(tmp_path: Path, prefect_harness: None) -> None:
    from prefect.client.orchestration import get_client

    from flows.campaign import campaign_flow

    data = short_campaign("flow-demo", experiments=3, initial=2)
    spec = parse_campaign(data)
    url = f"sqlite:///{tmp_path / 'flow.db'}"
    with SimulatedLab(spec, tmp_path / "tray"):
        summary = campaign_flow("flow-demo", spec.model_dump(mode="json"), url)
    assert summary["experiments"] == 3 and summary["failed"] == 0

    with get_client(sync_client=True) as client:
        runs = [run for run in client.read_flow_runs() if run.name == "flow-demo"]
        assert len(runs) == 1 and runs[0].state is not None and runs[0].state.is_completed()
        task_names = {task.name for task in client.read_task_runs()}
        assert {
            "plan-flow-demo-000",
            "synthesis-flow-demo-000",
            "xrd-flow-demo-002",
            "analyse-xrd-flow-demo-001",
        } <= task_names
        artifacts = {a.key: a for a in sorted(client.read_artifacts(), key=lambda a: a.created)}  # latest versions
        assert {"flow-demo-experiments", "flow-demo-report", "flow-demo-progress"} <= set(artifacts)
        assert artifacts["flow-demo-progress"].data == 100.0
        table = json.loads(artifacts["flow-demo-experiments"].data)  # units in headers, value ± std, feasibility
        assert len(table) == 3 and all(row["feasible"] in ("yes", "no") for row in table)
        assert any(key.startswith("anneal_temperature_c [") for key in table[0]), list(table[0])
        size = next(key for key in table[0] if key.startswith("anatase_crystallite_size_nm"))
        assert size == "anatase_crystallite_size_nm [nm]"
        assert all(" ± " in row[size] or row[size] == "—" for row in table)
        report = str(artifacts["flow-demo-report"].data)
        assert report.count("data:image/png;base64,") == 2  # best-so-far plot and the latest pattern's fit

        # The campaign's own records reach the flow run's Logs tab: each step on its instrument, each analysis.
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id])))
        messages = [log.message for log in logs]
        for index in range(3):
            assert any(m.startswith(f"experiment {index} analysed: ") for m in messages), messages
        assert any(" ran: synthesis on " in m for m in messages), messages


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CRUCIBLE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [
        (lambda d: d["parameters"][0].update(tempreature=5), ["unknown field 'parameters.0.tempreature'"]),
        (lambda d: d["parameters"][1].update(low=20), ["anneal_time_h", "lower bound 20 is not below upper bound 12"]),
    ],
)
def test_cli_rejects_malformed_campaign_file(tmp_path: Path, mutate: Any, fragments: list[str]) -> None:
    data = example_campaign()
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run_cli("run", str(path), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert_one_line_error(result, "bad.yaml", *fragments)
    assert not (tmp_path / "runs").exists()  # nothing started


def test_cli_names_an_unreachable_instrument(tmp_path: Path) -> None:
    data = example_campaign()
    data["instruments"]["furnace"]["timeout_s"] = 0.5
    path = tmp_path / "silent.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run_cli("run", str(path), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert_one_line_error(result, "'furnace'", data["instruments"]["furnace"]["address"], "does not answer")
