"""End-to-end tests of the BoTorch planner with real GPs on cheap analytic problems."""

from __future__ import annotations

import json
import math

import pytest

from agents.planner import (
    BoTorchPlanner,
    ExhaustedError,
    ObjectiveSpec,
    Observation,
    OutcomeConstraintSpec,
    ParameterSpec,
    Planner,
    best_observed,
    make_planner,
    planner_from_state_dict,
)
from tests.conftest import BRANIN_SPACE, branin

FAST = {"raw_samples": 32, "num_restarts": 2, "mc_samples": 64}
BRANIN_MIN = 0.397887


def run(planner: Planner, f, steps: int, n: int = 1) -> list:
    proposals = []
    for _ in range(steps):
        batch = planner.ask(n)
        proposals += batch
        planner.tell([Observation(p.conditions, f(p.conditions)) for p in batch])
    return proposals


def test_sobol_first_then_qlognei_in_bounds_and_improving():
    planner = BoTorchPlanner(BRANIN_SPACE, [ObjectiveSpec("y", "minimize")], seed=3, n_initial=5, **FAST)
    assert isinstance(planner, Planner)
    props = run(planner, lambda c: {"y": branin(c["x1"], c["x2"])}, steps=14)
    assert [p.strategy for p in props[:5]] == ["sobol"] * 5
    assert all(p.strategy == "qLogNEI" for p in props[5:])
    for p in props:
        assert -5 <= p.conditions["x1"] <= 10 and 0 <= p.conditions["x2"] <= 15
    for p in props[5:]:
        assert p.acquisition_value is not None and set(p.predicted) == {"y"}
        mean, std = p.predicted["y"]
        assert math.isfinite(mean) and std >= 0
    best = best_observed(planner.observations, planner.problem.objectives)
    sobol_best = min(branin(**p.conditions) for p in props[:5])
    assert best is not None and best.outcomes["y"] < min(sobol_best, 3.0)


def test_sobol_sequence_counts_told_and_pending():
    """The k-th design point is the same whether it follows told or pending experiments (resume-safe)."""
    kw = dict(parameters=BRANIN_SPACE, objectives=[ObjectiveSpec("y")], seed=7, n_initial=10)
    a = BoTorchPlanner(**kw)
    first_four = a.ask(4)
    b = BoTorchPlanner(**kw)
    b.tell([Observation(p.conditions, {}, failed=True) for p in first_four[:2]])
    nxt = b.ask(2, pending=[p.conditions for p in first_four[2:]])
    c = BoTorchPlanner(**kw)
    assert [p.conditions for p in nxt] == [p.conditions for p in c.ask(6)[4:]]


def test_outcome_constraint_moves_proposals_to_feasible_region():
    """maximise x1 + x2 on the unit square subject to c = x1 <= 0.3: the optimum is (0.3, 1)."""
    planner = BoTorchPlanner(
        [ParameterSpec("x1", 0.0, 1.0), ParameterSpec("x2", 0.0, 1.0)],
        [ObjectiveSpec("y")],
        [OutcomeConstraintSpec("c", "<=", 0.3)],
        seed=1,
        n_initial=5,
        **FAST,
    )
    props = run(planner, lambda c: {"y": c["x1"] + c["x2"], "c": c["x1"]}, steps=11)
    bo = props[5:]
    assert all(set(p.predicted) == {"y", "c"} for p in bo)
    feasible = [p for p in bo if p.conditions["x1"] <= 0.3 + 0.02]
    assert len(feasible) >= 5
    best = best_observed(planner.observations, planner.problem.objectives, planner.problem.constraints)
    assert best is not None and best.outcomes["c"] <= 0.3 and best.outcomes["y"] > 1.1


def test_target_direction_hits_the_target():
    planner = BoTorchPlanner(
        [ParameterSpec("x", 0.0, 1.0)], [ObjectiveSpec("y", "target", target=0.3)], seed=2, n_initial=3, **FAST
    )
    run(planner, lambda c: {"y": c["x"] ** 2 + 0.2}, steps=8)  # y = 0.3 at x = 0.316
    best = best_observed(planner.observations, planner.problem.objectives)
    assert best is not None and abs(best.outcomes["y"] - 0.3) < 0.01


def test_pending_points_are_never_proposed_again_and_exhaustion_is_reported():
    params = [ParameterSpec("a", 0, 2, kind="integer"), ParameterSpec("b", kind="categorical", choices=("u", "v"))]
    planner = BoTorchPlanner(params, [ObjectiveSpec("y")], seed=0, n_initial=2, **FAST)

    def f(c):
        return {"y": c["a"] + (c["b"] == "v")}

    run(planner, f, steps=2)
    told = [p.conditions for p in planner.ask()]  # a model-based proposal
    pending = told + [p.conditions for p in planner.ask(2, pending=told)]
    assert len({tuple(sorted(c.items())) for c in pending}) == 3
    last = planner.ask(1, pending=pending)
    everything = pending + [last[0].conditions] + [o.conditions for o in planner.observations]
    assert len({tuple(sorted(c.items())) for c in everything}) == 6  # the whole space, no repeat
    with pytest.raises(ExhaustedError):
        planner.ask(1, pending=pending + [last[0].conditions])


def test_continuous_pending_is_avoided():
    planner = BoTorchPlanner(BRANIN_SPACE, [ObjectiveSpec("y", "minimize")], seed=4, n_initial=5, **FAST)
    run(planner, lambda c: {"y": branin(c["x1"], c["x2"])}, steps=6)
    (first,) = planner.ask()
    (second,) = planner.ask(pending=[first.conditions])
    assert second.conditions != first.conditions


def test_same_seed_and_data_give_same_proposal_and_state_round_trips():
    kw = dict(parameters=BRANIN_SPACE, objectives=[ObjectiveSpec("y", "minimize")], seed=11, n_initial=4, **FAST)
    a = BoTorchPlanner(**kw)
    run(a, lambda c: {"y": branin(c["x1"], c["x2"])}, steps=6)
    b = BoTorchPlanner(**kw)
    b.tell(a.observations)
    pa, pb = a.ask(2), b.ask(2)
    assert [p.conditions for p in pa] == [p.conditions for p in pb]
    assert pa[0].strategy == "qLogNEI"
    state = json.loads(json.dumps(a.state_dict()))
    c = planner_from_state_dict(state)
    assert [p.conditions for p in c.ask(2)] == [p.conditions for p in pa]


def test_make_planner_names_and_baselines_share_protocol():
    for name in ("botorch", "random", "sobol"):
        planner = make_planner(name, parameters=BRANIN_SPACE, objectives=[ObjectiveSpec("y")], seed=5)
        assert isinstance(planner, Planner)
        props = planner.ask(3)
        assert len(props) == 3 and all(-5 <= p.conditions["x1"] <= 10 for p in props)
    sobol = make_planner("sobol", parameters=BRANIN_SPACE, objectives=[ObjectiveSpec("y")], seed=5)
    assert [p.strategy for p in sobol.ask(8)] == ["sobol"] * 8
    with pytest.raises(ValueError, match="unknown planner"):
        make_planner("ax", parameters=BRANIN_SPACE, objectives=[ObjectiveSpec("y")])
    by_path = make_planner(
        "agents.planner.baselines:RandomPlanner", parameters=BRANIN_SPACE, objectives=[ObjectiveSpec("y")]
    )
    assert by_path.ask()[0].strategy == "random"
