"""The campaign views: the Pareto front and its hypervolume, the map of measured shares; drawn from records."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from orchestrator.spec import load_campaign, parse_campaign
from orchestrator.store import ExperimentRecord, ExperimentStatus
from orchestrator.views import hypervolume_2d, plot_pareto_front, plot_share_map
from tests.conftest import ROOT


def _record(index: int, conditions: dict, outcomes: dict) -> ExperimentRecord:
    return ExperimentRecord(
        campaign_id="c", index=index, sample_id=f"s{index}", status=ExperimentStatus.ANALYSED,
        conditions_json=json.dumps(conditions), outcomes_json=json.dumps(outcomes),
    )


def test_hypervolume_of_a_two_point_front() -> None:
    assert hypervolume_2d([(1, 1), (2, 0.5)], (0, 0)) == 1.5
    assert hypervolume_2d([(1, 1), (0.5, 0.5)], (0, 0)) == 1.0  # a dominated point adds nothing
    assert hypervolume_2d([(-1, 2)], (0, 0)) == 0.0  # beyond the reference point


def test_the_pareto_front_of_two_objectives_is_drawn(tmp_path: Path) -> None:
    spec = parse_campaign(yaml.safe_load((ROOT / "examples" / "ceria_nanoparticles.yaml").read_text()))
    records = [
        _record(i, {}, {"saxs.radius_nm": {"value": r, "std": 0.1}, "saxs.radius_pd": {"value": p, "std": 0.01},
                        "saxs.shape_sphere_probability": {"value": 0.9, "std": float("nan")}})
        for i, (r, p) in enumerate([(3.0, 0.3), (2.5, 0.1), (2.0, 0.4)])
    ]
    path = plot_pareto_front(spec, records, tmp_path / "front.png")
    assert path is not None and path.stat().st_size > 10_000
    assert plot_share_map(spec, records, tmp_path / "map.png") is None  # no shares to map


def test_the_map_of_shares_of_a_composition_spread(tmp_path: Path) -> None:
    spec = load_campaign(ROOT / "examples" / "mg_zn_ce_phase_map.yaml", resources=False)
    names = ("xrd.periclase_fraction", "xrd.zincite_fraction", "xrd.ceria_fraction")
    records = [
        _record(i, {"wafer_x_mm": x, "wafer_y_mm": y},
                {n: {"value": v, "std": 0.01} for n, v in zip(names, (a, 1 - a, 0.0), strict=True)})
        for i, (x, y, a) in enumerate([(-30, -30, 0.9), (0, 0, 0.5), (30, 30, 0.1)])
    ]
    path = plot_share_map(spec, records, tmp_path / "map.png")
    assert path is not None and path.stat().st_size > 10_000
    assert plot_pareto_front(spec, records, tmp_path / "front.png") is None  # explore mode seeks no front
