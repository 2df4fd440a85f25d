"""Winsorisation of training outcomes (opt-in): Tukey cutoffs on the uninformative side only."""

from __future__ import annotations

import math

import pytest
import torch

from agents.planner import BoTorchPlanner, ObjectiveSpec, Observation, OutcomeConstraintSpec, ParameterSpec
from agents.planner.winsorize import winsorization_cutoffs

Y = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0], [100.0], [-100.0]], dtype=torch.double)


def test_an_objective_is_clipped_on_its_bad_side_only() -> None:
    # quartiles (lower / higher, as Ax takes them): q1 = 0, q3 = 4, IQR = 4
    assert winsorization_cutoffs("y", Y, [ObjectiveSpec("y", "maximize")], []) == (-6.0, math.inf)
    assert winsorization_cutoffs("y", Y, [ObjectiveSpec("y", "minimize")], []) == (-math.inf, 10.0)
    assert winsorization_cutoffs("y", Y, [ObjectiveSpec("y", "target", target=2.0)], []) == (-math.inf, math.inf)
    two = [ObjectiveSpec("y", "maximize"), ObjectiveSpec("z", "maximize")]
    assert winsorization_cutoffs("y", Y, two, []) == (-math.inf, math.inf)


def test_a_constraint_is_clipped_on_its_infeasible_side_and_never_made_feasible() -> None:
    fraction = torch.tensor([[0.0], [0.0], [0.01], [0.02], [0.05], [0.9], [1.0], [1.0]], dtype=torch.double)
    low, high = winsorization_cutoffs(
        "rutile", fraction, [ObjectiveSpec("size")], [OutcomeConstraintSpec("rutile", "<=", 0.1)]
    )
    # q1 = 0, q3 = 1: cutoff max(q3, b) + 1.5 (max(q3, b) - q1) = 2.5 leaves a step this common alone
    assert (low, high) == (-math.inf, pytest.approx(2.5))
    mostly_pure = torch.tensor([[0.0]] * 6 + [[0.02], [0.04], [1.0], [1.0]], dtype=torch.double)
    low, high = winsorization_cutoffs(
        "rutile", mostly_pure, [ObjectiveSpec("size")], [OutcomeConstraintSpec("rutile", "<=", 0.1)]
    )
    assert high == pytest.approx(0.25)  # the bound 0.1 + 1.5 * 0.1: fractions of 1.0 become 0.25, still infeasible
    low, _ = winsorization_cutoffs(
        "purity", 1 - mostly_pure, [ObjectiveSpec("size")], [OutcomeConstraintSpec("purity", ">=", 0.9)]
    )
    assert low == pytest.approx(0.75) and low < 0.9


def test_the_planner_fits_the_clipped_values_only_when_asked() -> None:
    params = [ParameterSpec("x", 0.0, 1.0)]
    told = [Observation({"x": x}, {"y": y}) for x, y in [(0.1, 1.0), (0.3, 2.0), (0.5, 1.5), (0.7, 2.5), (0.9, -500.0)]]
    for winsorize, lowest in ((False, -500.0), (True, 1.0 - 1.5 * 1.0)):
        planner = BoTorchPlanner(
            params, [ObjectiveSpec("y")], seed=0, n_initial=2, winsorize=winsorize, raw_samples=16, num_restarts=2
        )
        planner.tell(told)
        planner.ask()
        train_y = planner.model.train_targets  # type: ignore[union-attr]
        # Standardize keeps the order: the fitted minimum is the clipped one
        raw = planner.model.outcome_transform.untransform(train_y.reshape(-1, 1))[0]  # type: ignore[union-attr]
        assert float(raw.min()) == pytest.approx(lowest)
