"""Planner options of the campaign file: a CSV of candidates, linear parameter constraints, plug-in planners,
measurement fidelities (scans) and condition-dependent costs."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import yaml

from orchestrator.campaign import Campaign, CampaignError, campaign_planner, revise_campaign
from orchestrator.lab import Lab
from orchestrator.simulated_lab import SimulatedLab
from orchestrator.spec import CampaignFileError, load_campaign, parse_campaign
from orchestrator.store import ExperimentStatus, Store
from tests.conftest import example_campaign
from tests.test_campaign_e2e import run_to_budget


def _campaign(tmp_path: Path, data: dict) -> Campaign:
    spec = parse_campaign(data)
    return Campaign.open(spec, Store(f"sqlite:///{tmp_path / 'c.db'}"), Lab.from_spec(spec))


def test_candidates_from_a_csv_next_to_the_campaign_file_are_picked_once_each(tmp_path: Path) -> None:
    rows = [(400 + 25 * i, 0.5 + 0.5 * (i % 20), 0.005 * (i % 11)) for i in range(24)]
    (tmp_path / "furnace_slots.csv").write_text(
        "anneal_temperature_c,anneal_time_h,dopant_fraction\n" + "".join(f"{t},{h},{x}\n" for t, h, x in rows)
    )
    data = example_campaign(name="slots", budget={"experiments": 9, "batch_size": 3})
    data["planner"]["candidates"] = "furnace_slots.csv"
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_campaign(path)
    assert len(spec.planner.candidates or []) == 24
    campaign = Campaign.open(spec, Store(f"sqlite:///{tmp_path / 'c.db'}"), Lab.from_spec(spec))
    for _ in range(3):  # nothing is analysed yet: every batch sees the earlier ones as pending
        assert len(campaign.plan()) == 3
    picked = [tuple(e.conditions[k] for k in ("anneal_temperature_c", "anneal_time_h", "dopant_fraction"))
              for e in campaign.experiments()]
    assert len(picked) == 9 and len(set(picked)) == 9
    allowed = {(float(t), float(h), float(x)) for t, h, x in rows}
    assert set(picked) <= allowed


def test_a_bad_candidates_file_is_named(tmp_path: Path) -> None:
    data = example_campaign(name="slots")
    for text, expected in (
        ("anneal_temperature_c,anneal_time_h,dopant_fraction\n1200,1,0.01\n", "temperature_c = 1200.0 is outside"),
        ("anneal_temperature_c,anneal_time_h\n500,1\n", "missing ['dopant_fraction']"),
        ("anneal_temperature_c,anneal_time_h,dopant_fraction\n500,,0.01\n", "line 2: no value for 'anneal_time_h'"),
    ):
        (tmp_path / "slots.csv").write_text(text)
        data["planner"]["candidates"] = "slots.csv"
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
        with pytest.raises(CampaignFileError, match=expected.replace("[", r"\[").replace("]", r"\]")):
            load_campaign(tmp_path / "c.yaml")
    data["planner"]["candidates"] = "absent.csv"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(CampaignFileError, match="cannot read candidates file"):
        load_campaign(tmp_path / "c.yaml")


def test_every_proposal_respects_the_parameter_constraints(tmp_path: Path) -> None:
    data = example_campaign(name="linear", budget={"experiments": 8, "batch_size": 4})
    data["parameter_constraints"] = [
        {"coefficients": {"anneal_time_h": 1.0, "dopant_fraction": 50.0}, "op": "<=", "value": 6.0}
    ]
    campaign = _campaign(tmp_path, data)
    campaign.plan()
    campaign.plan()
    for experiment in campaign.experiments():
        c = experiment.conditions
        assert c["anneal_time_h"] + 50.0 * c["dopant_fraction"] <= 6.0 + 1e-6, c
    data["parameter_constraints"][0]["coefficients"] = {"anneal_tim_h": 1.0}
    with pytest.raises(CampaignFileError, match="'anneal_tim_h' is not a continuous parameter"):
        parse_campaign(data)


def test_a_plug_in_planner_by_import_path(tmp_path: Path) -> None:
    data = example_campaign(name="plugin")
    data["planner"] = {"name": "agents.planner:SobolPlanner"}
    campaign = _campaign(tmp_path, data)
    (experiment_id,) = campaign.plan()
    assert campaign.store.proposal(experiment_id).strategy == "sobol"  # type: ignore[union-attr]
    data = example_campaign(name="missing-plugin")
    data["planner"] = {"name": "my_lab.planners:Nothing"}
    store = Store(f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(CampaignError, match="cannot import planner 'my_lab.planners:Nothing'"):
        Campaign.open(parse_campaign(data), store, Lab.from_spec(parse_campaign(data)))
    assert store.campaign_by_name("missing-plugin") is None


def _run_in_simulated_lab(tmp_path: Path, data: dict) -> tuple[Campaign, Store]:
    spec = parse_campaign(data)
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    with SimulatedLab(spec, tmp_path / "tray"), Lab.from_spec(spec) as lab:
        campaign = Campaign.open(spec, store, lab)
        run_to_budget(campaign)
    return campaign, store


def test_the_planner_chooses_the_scan_and_the_diffractometer_counts_that_long(tmp_path: Path) -> None:
    scans = {"quick": {"counting_time_s": 0.25}, "long": {"counting_time_s": 4.0}}
    data = example_campaign(
        name="scans",
        budget={"experiments": 6, "batch_size": 1},
        planner={"name": "botorch", "initial_experiments": 4, "raw_samples": 32, "num_restarts": 2},
        measurement={"scans": scans},
    )
    campaign, store = _run_in_simulated_lab(tmp_path, data)
    experiments = campaign.experiments()
    assert [e.status for e in experiments] == [ExperimentStatus.ANALYSED] * 6  # the synthesiser never saw `scan`
    chosen = [e.conditions["scan"] for e in experiments]
    assert chosen[:4] == ["quick"] * 4, chosen  # no model yet: the cheapest scan
    assert set(chosen) <= {"quick", "long"}
    for experiment, scan in zip(experiments, chosen, strict=True):
        reading = store.step_result(experiment.id, "xrd").reading  # type: ignore[union-attr]
        assert reading["counting_time_s"] == scans[scan]["counting_time_s"]
        sample = store.step_result(experiment.id, "synthesis").result  # type: ignore[union-attr]
        assert "scan" not in sample["conditions"]
    # the planner learns each scan's noise from the analysis: the long scan's, until measured, from the quick
    # scan's scaled by counting statistics (variance ~ 1 / counting time)
    planner = campaign_planner(campaign.spec)
    planner.tell(campaign.observations())
    quick, long = planner._level_noise("anatase_crystallite_size_nm")  # type: ignore[attr-defined]
    reported = [
        e.outcomes["xrd.anatase_crystallite_size_nm"]["std"] ** 2
        for e in experiments
        if e.conditions["scan"] == "quick" and math.isfinite(e.outcomes["xrd.anatase_crystallite_size_nm"]["std"])
    ]
    assert quick == pytest.approx(statistics.median_low(reported), rel=1e-6)  # torch: the lower median
    if "long" not in chosen:
        assert long == pytest.approx(quick / 16, rel=1e-6)


def test_a_condition_dependent_cost_weighs_every_model_based_proposal(tmp_path: Path) -> None:
    data = example_campaign(
        name="cost",
        budget={"experiments": 6, "batch_size": 1},
        planner={
            "name": "botorch",
            "initial_experiments": 4,
            "raw_samples": 32,
            "num_restarts": 2,
            "cost": {"fixed": 2.0, "per_unit": {"anneal_time_h": 1.0}},  # furnace hours: set-up plus the anneal
        },
    )
    campaign, store = _run_in_simulated_lab(tmp_path, data)
    strategies = [store.proposal(e.id).strategy for e in campaign.experiments()]  # type: ignore[union-attr]
    assert strategies == ["sobol"] * 4 + ["qLogNEI/cost"] * 2, strategies


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"planner": {"cost": {"per_unit": {"anneal_tim_h": 1.0}}}}, "'anneal_tim_h' is not a continuous or integer"),
        ({"planner": {"cost": {"fixed": 0.0}}}, "give a positive fixed cost or per_unit"),
        ({"planner": {"cost": {"per_unit": {"dopant_fraction": 1.0}}}}, "the cheapest experiment would cost nothing"),
        ({"planner": {"name": "sobol", "cost": {"fixed": 1.0}}}, "planner.cost need planner 'botorch', not 'sobol'"),
        ({"measurement": {"scans": {"quick": {"counting_time_s": 0.2}}}}, "give two or more scans"),
        ({"measurement": {"scans": {"a": {"counting_time_s": 1}, "b": {"counting_time_s": -1}}}}, "greater than 0"),
    ],
)
def test_bad_costs_and_scans_are_named(change: dict, expected: str) -> None:
    data = example_campaign(name="bad")
    for key, value in change.items():
        data[key] = {**data.get(key, {}), **value}
    with pytest.raises(CampaignFileError, match=expected):
        parse_campaign(data)


def test_fixed_values_are_used_by_every_proposal(tmp_path: Path) -> None:
    data = example_campaign(name="fixed", budget={"experiments": 8, "batch_size": 4})
    data["planner"]["fixed"] = {"dopant_fraction": 0.05}  # today's precursor batch
    campaign = _campaign(tmp_path, data)
    campaign.plan()
    campaign.plan()
    assert [e.conditions["dopant_fraction"] for e in campaign.experiments()] == [0.05] * 8
    data["planner"]["fixed"] = {"dopant_fraction": 0.5}
    with pytest.raises(CampaignFileError, match=r"planner.fixed: dopant_fraction = 0.5 is outside \[0, 0.1\]"):
        parse_campaign(data)


def test_an_edited_campaign_file_narrows_the_space_and_keeps_every_experiment(tmp_path: Path) -> None:
    planner = {"name": "botorch", "initial_experiments": 4, "raw_samples": 32, "num_restarts": 2}
    data = example_campaign(name="edited", budget={"experiments": 5, "batch_size": 1}, planner=planner)
    campaign, store = _run_in_simulated_lab(tmp_path, data)
    before = [(e.id, e.conditions, e.outcomes) for e in campaign.experiments()]

    edited = json.loads(json.dumps(data))
    edited["parameters"][0] |= {"low": 600.0, "high": 750.0}  # narrow the anneal temperature
    edited["budget"]["experiments"] = 8
    edited["planner"]["fixed"] = {"anneal_time_h": 2.0}
    spec = parse_campaign(edited)
    assert revise_campaign(store, spec) == ["budget", "parameters", "planner"]
    reopened = Campaign.open(spec, store, Lab.from_spec(spec), resume=True)
    assert reopened.budget == 8 and len(reopened.observations()) == 5
    reopened.plan(3)
    experiments = reopened.experiments()
    assert [(e.id, e.conditions, e.outcomes) for e in experiments[:5]] == before  # nothing recorded is touched
    for e in experiments[5:]:
        assert 600.0 <= e.conditions["anneal_temperature_c"] <= 750.0 and e.conditions["anneal_time_h"] == 2.0
    assert {store.proposal(e.id).strategy for e in experiments[5:]} == {"qLogNEI"}  # type: ignore[union-attr]

    renamed = json.loads(json.dumps(edited))
    renamed["parameters"][1]["name"] = "anneal_hours"
    renamed["planner"].pop("fixed")
    with pytest.raises(CampaignError, match="cannot continue under the edited file: its parameters were"):
        revise_campaign(store, parse_campaign(renamed))
    edited["budget"]["experiments"] = 6
    with pytest.raises(CampaignError, match="budget 6 is below its 8 experiments"):
        revise_campaign(store, parse_campaign(edited))
