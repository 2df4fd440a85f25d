"""Planner options of the campaign file: a CSV of candidates, linear parameter constraints, plug-in planners."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.campaign import Campaign, CampaignError
from orchestrator.lab import Lab
from orchestrator.spec import CampaignFileError, load_campaign, parse_campaign
from orchestrator.store import Store
from tests.conftest import example_campaign


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
