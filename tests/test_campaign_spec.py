"""The campaign file: the example validates, and malformed files get errors naming field and problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.spec import CampaignFileError, load_campaign, parse_campaign

EXAMPLE = Path(__file__).parent.parent / "examples" / "tio2_anneal.yaml"


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_campaign_is_valid() -> None:
    spec = load_campaign(EXAMPLE)
    assert spec.budget.experiments == 20
    assert [p.name for p in spec.parameters] == ["anneal_temperature_c", "anneal_time_h", "dopant_fraction"]
    assert spec.instrument_of_kind("diffractometer")[1].address == "tcp://127.0.0.1:5702"


def test_misspelt_field_is_named() -> None:
    data = example()
    data["budjet"] = data.pop("budget")
    with pytest.raises(CampaignFileError) as error:
        parse_campaign(data, "c.yaml")
    assert "unknown field 'budjet'" in str(error.value)
    assert "missing required field 'budget'" in str(error.value)


def test_nested_misspelt_field_is_named() -> None:
    data = example()
    data["parameters"][1]["hihg"] = 3
    with pytest.raises(CampaignFileError, match=r"unknown field 'parameters\.1\.hihg'"):
        parse_campaign(data, "c.yaml")


def test_lower_bound_above_upper_bound() -> None:
    data = example()
    data["parameters"][0]["low"] = 1200
    with pytest.raises(CampaignFileError, match="lower bound 1200 is not below upper bound 1000"):
        parse_campaign(data, "c.yaml")


def test_objective_must_be_a_measured_quantity() -> None:
    data = example()
    data["objectives"][0]["name"] = "anatase_size"
    with pytest.raises(CampaignFileError, match="'anatase_size' is not a quantity the analysis reports"):
        parse_campaign(data, "c.yaml")


def test_bad_address_and_missing_instrument_kind() -> None:
    data = example()
    data["instruments"]["xrd"]["address"] = "localhost:5702"
    with pytest.raises(CampaignFileError, match=r"instruments\.xrd\.address"):
        parse_campaign(data, "c.yaml")
    data = example()
    del data["instruments"]["furnace"]
    with pytest.raises(CampaignFileError, match="no instrument of kind 'synthesiser'"):
        parse_campaign(data, "c.yaml")


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(CampaignFileError, match="not valid YAML"):
        load_campaign(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(CampaignFileError, match="must be a YAML mapping"):
        load_campaign(listing)
    with pytest.raises(CampaignFileError, match="cannot read campaign file"):
        load_campaign(tmp_path / "missing.yaml")
