"""The floor on the inferred noise of outcomes told without variances (``PlannerConfig.min_noise``)."""

from __future__ import annotations

import math

import pytest
import torch

from agents.planner import BoTorchPlanner, ObjectiveSpec, Observation, SpecError
from tests.conftest import BRANIN_SPACE, branin

FAST = {"raw_samples": 64, "num_restarts": 4, "mc_samples": 64}


def told_planner(min_noise: float | None) -> BoTorchPlanner:
    planner = BoTorchPlanner(BRANIN_SPACE, [ObjectiveSpec("y", "minimize")], seed=0, min_noise=min_noise, **FAST)
    points = torch.quasirandom.SobolEngine(2, scramble=True, seed=3).draw(100, dtype=torch.double)
    for u1, u2 in points.tolist():
        x1, x2 = -5.0 + 15.0 * u1, 15.0 * u2
        planner.tell([Observation({"x1": x1, "x2": x2}, {"y": branin(x1, x2)})])
    planner.ask()  # fits the model; BoTorch's noise floor is ~0.5 in y units here (y spans 0.4 to ~300)
    return planner


def inferred_noise_std(planner: BoTorchPlanner) -> float:
    """The fitted noise standard deviation in the outcome's own units."""
    model = planner.model
    return float((model.likelihood.noise.sqrt() * model.outcome_transform.stdvs).detach())


def test_the_default_floor_models_a_noiseless_outcome_as_noisy_at_a_percent_of_its_range() -> None:
    planner = told_planner(None)
    assert float(planner.model.likelihood.noise) == pytest.approx(1e-4, rel=1e-3)  # pinned at BoTorch's floor
    assert inferred_noise_std(planner) > 0.3  # sqrt(1e-4) * std(y), std(y) ~ 50 here: noise of 0.5 on exact data


def test_a_lower_floor_lets_a_noiseless_outcome_be_resolved_finely() -> None:
    default, finer = told_planner(None), told_planner(1e-6)
    assert float(finer.model.likelihood.noise) < 1e-5
    assert inferred_noise_std(finer) < 0.2 * inferred_noise_std(default)
    x = default.space.encode({"x1": math.pi, "x2": 2.275}).unsqueeze(0)  # a minimum, not among the told points
    with torch.no_grad():
        sd_default = float(default.model.posterior(x).variance.sqrt())
        sd_finer = float(finer.model.posterior(x).variance.sqrt())
    assert sd_finer < sd_default


def test_min_noise_survives_a_restart_and_bad_values_are_refused() -> None:
    planner = told_planner(1e-6)
    again = BoTorchPlanner.from_state_dict(planner.state_dict())
    assert again.config.min_noise == 1e-6
    assert again.ask()[0].conditions == planner.ask()[0].conditions
    for bad in (0.0, -1e-6, 2.0):
        with pytest.raises(SpecError, match="min_noise"):
            BoTorchPlanner(BRANIN_SPACE, [ObjectiveSpec("y", "minimize")], min_noise=bad)
