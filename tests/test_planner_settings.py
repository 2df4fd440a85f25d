"""Planner modelling settings of the campaign file (issue 20): the GP kernel, the acquisition (EI or UCB), UCB's
exploration weight and the noise floor. Each is validated with one line naming it, reaches the BoTorch planner,
changes what it fits or how it chooses, and survives a save and load of the planner's state."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel

from agents.planner import (
    BoTorchPlanner,
    CostSpec,
    ObjectiveSpec,
    Observation,
    OutcomeConstraintSpec,
    ParameterSpec,
    PlannerConfig,
    SpecError,
    planner_from_state_dict,
)
from orchestrator.campaign import campaign_planner
from orchestrator.spec import CampaignFileError, CampaignSpec, load_campaign
from tests.conftest import example_campaign

NEW_CONFIG_FIELDS = ("kernel", "acquisition", "exploration_weight")

# --------------------------------------------------------------------------------------------- the campaign file


def _load(tmp_path: Path, planner: dict[str, Any], **overrides: Any) -> CampaignSpec:
    """The TiO2 demo campaign with ``planner`` settings added, written to a YAML file and loaded as a user's is."""
    data = example_campaign(name="settings", **overrides)
    data["planner"] = {**data["planner"], **planner}
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_campaign(path)


@pytest.mark.parametrize(
    ("planner", "expected"),
    [
        ({"kernel": "matern32"}, r"planner\.kernel: should be 'rbf' or 'matern52'"),
        ({"kernel": 52}, r"planner\.kernel"),
        ({"acquisition": "pi"}, r"planner\.acquisition: should be 'ei' or 'ucb'"),
        ({"acquisition": "ucb", "exploration_weight": 0}, r"planner\.exploration_weight: must be greater than 0"),
        ({"acquisition": "ucb", "exploration_weight": -1.5}, r"planner\.exploration_weight: must be greater than 0"),
        ({"acquisition": "ucb", "exploration_weight": 101}, r"planner\.exploration_weight: must be at most 100"),
        ({"acquisition": "ucb", "exploration_weight": float("nan")}, r"planner\.exploration_weight: must be a finite"),
        ({"acquisition": "ucb", "exploration_weight": "two"}, r"planner\.exploration_weight: must be a number"),
        ({"exploration_weight": 2.0}, r"planner\.exploration_weight: only used with `acquisition: ucb`"),
        ({"acquisition": "ei", "exploration_weight": 2.0}, r"planner\.exploration_weight: only used with"),
        ({"noise_floor": 0}, r"planner\.noise_floor: must be greater than 0"),
        ({"noise_floor": 1.5}, r"planner\.noise_floor: must be at most 1"),
        ({"noise_floor": float("inf")}, r"planner\.noise_floor: must be a finite"),
        ({"acquisition": "ucb", "cost": {"fixed": 1.0}}, r"planner\.acquisition: 'ucb' cannot weigh planner\.cost"),
        ({"name": "sobol", "kernel": "matern52"}, r"planner\.kernel need planner 'botorch', not 'sobol'"),
        ({"name": "random", "noise_floor": 1e-6}, r"planner\.noise_floor need planner 'botorch', not 'random'"),
        ({"name": "sobol", "acquisition": "ucb"}, r"planner\.acquisition need planner 'botorch'"),
    ],
)
def test_a_bad_setting_is_refused_in_one_line_naming_it(tmp_path: Path, planner: dict, expected: str) -> None:
    with pytest.raises(CampaignFileError, match=expected) as error:
        _load(tmp_path, planner)
    assert "\n" not in str(error.value)
    assert str(tmp_path / "campaign.yaml") in str(error.value)


def test_ucb_with_several_objectives_is_refused_in_one_line(tmp_path: Path) -> None:
    objectives = [{"name": "anatase_crystallite_size_nm"}, {"name": "anatase_fraction"}]
    with pytest.raises(CampaignFileError, match=r"planner\.acquisition: 'ucb' takes one objective, the file has 2"):
        _load(tmp_path, {"acquisition": "ucb"}, objectives=objectives)
    assert _load(tmp_path, {"kernel": "matern52"}, objectives=objectives).planner.kernel == "matern52"


def test_left_out_settings_keep_the_planner_defaults(tmp_path: Path) -> None:
    planner = campaign_planner(_load(tmp_path, {}))
    assert isinstance(planner, BoTorchPlanner)
    defaults = PlannerConfig()
    for name in (*NEW_CONFIG_FIELDS, "min_noise"):
        assert getattr(planner.config, name) == getattr(defaults, name)
    assert (defaults.kernel, defaults.acquisition, defaults.min_noise) == ("rbf", "ei", None)  # today's behaviour


def _tio2_observations(n: int = 8) -> list[Observation]:
    """``n`` made-up results of the TiO2 campaign, spread over its box."""
    out = []
    for i in range(n):
        t, h, x = 400 + 600 * ((0.37 * i + 0.11) % 1), 0.5 + 11.5 * ((0.61 * i + 0.23) % 1), 0.1 * ((0.29 * i) % 1)
        size = 20 + 30 * math.sin(t / 180) + 2 * h - 50 * x
        rutile = 0.02 + 0.6 * max(t - 650, 0.0) / 350 * (1 - 5 * x)  # below the 0.1 bound up to ~700 degC
        out.append(
            Observation(
                {"anneal_temperature_c": t, "anneal_time_h": h, "dopant_fraction": x},
                {"anatase_crystallite_size_nm": size, "rutile_fraction": rutile},
            )
        )
    return out


def _fast(planner: dict[str, Any]) -> dict[str, Any]:
    return {"raw_samples": 32, "num_restarts": 2, **planner}


@pytest.mark.parametrize(("kernel", "kind"), [("rbf", RBFKernel), ("matern52", MaternKernel)])
def test_the_kernel_reaches_the_fitted_model(tmp_path: Path, kernel: str, kind: type) -> None:
    planner = campaign_planner(_load(tmp_path, _fast({"kernel": kernel})))
    assert isinstance(planner, BoTorchPlanner) and planner.config.kernel == kernel
    planner.tell(_tio2_observations())
    (proposal,) = planner.ask()
    assert proposal.strategy == "qLogNEI"
    covar = planner.model.covar_module  # type: ignore[union-attr]
    if kernel == "matern52":  # the classic GP-ARD Matern-5/2: an outputscale over the Matern kernel
        assert type(covar) is ScaleKernel
        covar = covar.base_kernel
        assert covar.nu == 2.5
        assert covar.lengthscale.shape[-1] == 3  # ARD: one lengthscale per parameter
    assert type(covar) is kind


def test_ucb_and_its_weight_reach_the_planner_and_choose(tmp_path: Path) -> None:
    planner = campaign_planner(_load(tmp_path, _fast({"acquisition": "ucb", "exploration_weight": 1.5})))
    assert isinstance(planner, BoTorchPlanner)
    assert (planner.config.acquisition, planner.config.exploration_weight) == ("ucb", 1.5)
    planner.tell(_tio2_observations())
    proposals = planner.ask(2)  # a batch: the second is chosen with the first pending
    assert [p.strategy for p in proposals] == ["qUCB", "qUCB"]
    assert proposals[0].conditions != proposals[1].conditions


def test_the_noise_floor_reaches_the_likelihood(tmp_path: Path) -> None:
    planner = campaign_planner(_load(tmp_path, _fast({"noise_floor": 1e-3})))
    assert isinstance(planner, BoTorchPlanner) and planner.config.min_noise == 1e-3
    planner.tell(_tio2_observations())
    planner.ask()
    noise = planner.model.likelihood.noise_covar  # type: ignore[union-attr]
    assert noise.raw_noise_constraint.lower_bound.item() == pytest.approx(1e-3)
    assert bool((noise.noise >= 1e-3 - 1e-12).all())


# ------------------------------------------------------------------------------------------- the planner itself


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"kernel": "matern32"}, "kernel must be 'rbf' or 'matern52'"),
        ({"acquisition": "pi"}, "acquisition must be 'ei' or 'ucb'"),
        ({"exploration_weight": 0.0}, "exploration_weight must be a number in"),
        ({"exploration_weight": -1.0}, "exploration_weight must be a number in"),
        ({"exploration_weight": 100.5}, "exploration_weight must be a number in"),
        ({"exploration_weight": math.nan}, "exploration_weight must be a number in"),
        ({"exploration_weight": math.inf}, "exploration_weight must be a number in"),
        ({"exploration_weight": True}, "exploration_weight must be a number in"),
    ],
)
def test_planner_config_refuses_bad_settings(settings: dict, expected: str) -> None:
    with pytest.raises(SpecError, match=expected):
        PlannerConfig(**settings)


def test_the_planner_refuses_ucb_with_several_objectives_or_a_cost() -> None:
    space = [ParameterSpec("x", 0.0, 1.0)]
    with pytest.raises(SpecError, match="acquisition 'ucb' takes one objective"):
        BoTorchPlanner(space, [ObjectiveSpec("a"), ObjectiveSpec("b")], acquisition="ucb")
    with pytest.raises(SpecError, match="acquisition 'ucb' cannot weigh a cost"):
        BoTorchPlanner(space, [ObjectiveSpec("a")], acquisition="ucb", cost=CostSpec(fixed=1.0))
    BoTorchPlanner(space, [ObjectiveSpec("a"), ObjectiveSpec("b")], kernel="matern52")  # EI / EHVI: fine


def _wave(x: float) -> float:
    return math.sin(6 * x) + 0.3 * x


@pytest.mark.parametrize("weight", [0.5, 3.0])
def test_ucb_value_is_the_posterior_mean_plus_weight_standard_deviations(weight: float) -> None:
    planner = BoTorchPlanner(
        [ParameterSpec("x", 0.0, 1.0)], [ObjectiveSpec("y")], acquisition="ucb", exploration_weight=weight, seed=3
    )
    planner.tell([Observation({"x": x}, {"y": _wave(x)}) for x in (0.02, 0.15, 0.33, 0.41, 0.58, 0.7, 0.86, 0.97)])
    (proposal,) = planner.ask()
    assert proposal.strategy == "qUCB" and proposal.acquisition_value is not None
    mean, std = proposal.predicted["y"]
    assert std > 1e-3  # the check below tells the weight apart from its square root
    # quasi-MC estimate of E|u - mean| with 128 samples: within a few per cent of std * sqrt(2 / pi)
    assert proposal.acquisition_value == pytest.approx(mean + weight * std, abs=0.05 * weight * std + 1e-6)


def test_ucb_value_on_a_minimised_objective_is_the_utility_bound() -> None:
    planner = BoTorchPlanner(
        [ParameterSpec("x", 0.0, 1.0)],
        [ObjectiveSpec("y", "minimize")],
        acquisition="ucb",
        exploration_weight=2.0,
        seed=4,
    )
    planner.tell([Observation({"x": x}, {"y": _wave(x)}) for x in (0.02, 0.15, 0.33, 0.41, 0.58, 0.7, 0.86, 0.97)])
    (proposal,) = planner.ask()
    mean, std = proposal.predicted["y"]
    assert proposal.acquisition_value == pytest.approx(-mean + 2.0 * std, abs=0.1 * std + 1e-6)


def test_ucb_keeps_to_an_outcome_constraint() -> None:
    # maximise x subject to c = x <= 0.5: the optimum is on the bound, everything above it is out of specification
    planner = BoTorchPlanner(
        [ParameterSpec("x", 0.0, 1.0)],
        [ObjectiveSpec("y")],
        [OutcomeConstraintSpec("c", "<=", 0.5)],
        acquisition="ucb",
        seed=1,
    )
    planner.tell([Observation({"x": x}, {"y": x, "c": x}) for x in (i / 8 for i in range(9))])
    proposals = planner.ask(2)
    assert [p.strategy for p in proposals] == ["qUCB", "qUCB"]
    for p in proposals:
        assert 0.35 <= p.conditions["x"] <= 0.6, p.conditions  # near the bound; unweighted UCB goes to ~0.9


def test_ucb_keeps_out_of_where_experiments_failed() -> None:
    # maximise x; every experiment above x = 0.5 failed (no outcome): the learned classifier must hold UCB back
    planner = BoTorchPlanner([ParameterSpec("x", 0.0, 1.0)], [ObjectiveSpec("y")], acquisition="ucb", seed=2)
    grid = [i / 10 for i in range(11)]
    planner.tell(
        [Observation({"x": x}, {"y": x}) if x <= 0.5 else Observation({"x": x}, {}, failed=True) for x in grid]
    )
    (proposal,) = planner.ask()
    assert proposal.strategy == "qUCB"
    assert proposal.conditions["x"] <= 0.6, proposal.conditions  # unweighted UCB goes to ~0.7


def test_matern52_is_the_continuous_kernel_of_a_mixed_space() -> None:
    space = [ParameterSpec("x", 0.0, 1.0), ParameterSpec("gas", kind="categorical", choices=("air", "n2", "ar"))]
    planner = BoTorchPlanner(space, [ObjectiveSpec("y")], kernel="matern52", seed=5, raw_samples=32, num_restarts=2)
    gases = ("air", "n2", "ar")
    planner.tell(
        [Observation({"x": i / 7, "gas": gases[i % 3]}, {"y": _wave(i / 7) + 0.2 * (i % 3)}) for i in range(8)]
    )
    planner.ask()
    kernels = list(planner.model.covar_module.modules())  # type: ignore[union-attr]
    assert any(isinstance(k, MaternKernel) and k.nu == 2.5 for k in kernels)
    assert not any(isinstance(k, RBFKernel) for k in kernels)


def test_ucb_picks_an_untold_candidate_of_a_finite_set() -> None:
    candidates = [{"x": i / 19} for i in range(20)]
    planner = BoTorchPlanner(
        [ParameterSpec("x", 0.0, 1.0)],
        [ObjectiveSpec("y")],
        candidates=candidates,
        acquisition="ucb",
        exploration_weight=2.0,
        seed=6,
    )
    told = candidates[::3]
    planner.tell([Observation(c, {"y": _wave(c["x"])}) for c in told])
    proposals = planner.ask(3)
    assert [p.strategy for p in proposals] == ["qUCB"] * 3
    picked = [p.conditions for p in proposals]
    assert all(c in candidates and c not in told for c in picked), picked
    assert len({c["x"] for c in picked}) == 3


# ----------------------------------------------------------------------------------------------------- persistence


def test_the_new_settings_survive_a_save_and_load() -> None:
    planner = BoTorchPlanner(
        [ParameterSpec("x", 0.0, 1.0)],
        [ObjectiveSpec("y")],
        kernel="matern52",
        acquisition="ucb",
        exploration_weight=3.5,
        min_noise=1e-5,
        seed=8,
    )
    planner.tell([Observation({"x": x}, {"y": _wave(x)}) for x in (0.1, 0.3, 0.5, 0.7, 0.9, 0.95)])
    state = json.loads(json.dumps(planner.state_dict()))
    assert {k: state["config"][k] for k in NEW_CONFIG_FIELDS} == {
        "kernel": "matern52",
        "acquisition": "ucb",
        "exploration_weight": 3.5,
    }
    loaded = planner_from_state_dict(state)
    assert isinstance(loaded, BoTorchPlanner) and loaded.config == planner.config
    assert [p.conditions for p in loaded.ask()] == [p.conditions for p in planner.ask()]


def test_a_state_saved_before_the_settings_existed_loads_with_the_defaults() -> None:
    planner = BoTorchPlanner([ParameterSpec("x", 0.0, 1.0)], [ObjectiveSpec("y")], seed=9)
    planner.tell([Observation({"x": x}, {"y": _wave(x)}) for x in (0.1, 0.5, 0.9)])
    state = json.loads(json.dumps(planner.state_dict()))
    for name in NEW_CONFIG_FIELDS:
        del state["config"][name]
    loaded = planner_from_state_dict(state)
    assert isinstance(loaded, BoTorchPlanner)
    defaults = PlannerConfig()
    assert all(getattr(loaded.config, n) == getattr(defaults, n) for n in NEW_CONFIG_FIELDS)
    assert len(loaded.observations) == 3
