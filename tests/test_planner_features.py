"""Campaign shapes beyond one continuous objective: mixed spaces, compositions, finite sets, several objectives,
noise, failures, costs, measurement choice, fixed values, changed bounds, exploration. Real GPs throughout."""

from __future__ import annotations

import math

import pytest
import torch

from agents.planner import (
    BoTorchPlanner,
    CostSpec,
    LinearConstraintSpec,
    MeasurementSpec,
    ObjectiveSpec,
    Observation,
    OutcomeConstraintSpec,
    ParameterSpec,
    RandomPlanner,
    SobolPlanner,
    best_observed,
    pareto_front,
)

FAST = {"raw_samples": 32, "num_restarts": 2, "mc_samples": 64}
UNIT2 = [ParameterSpec("x1", 0.0, 1.0), ParameterSpec("x2", 0.0, 1.0)]


def key(c: dict) -> tuple:
    return tuple(sorted((k, round(v, 9) if isinstance(v, float) else v) for k, v in c.items()))


def run(planner, f, steps: int, n: int = 1, **ask):
    props = []
    for _ in range(steps):
        batch = planner.ask(n, **ask)
        props += batch
        planner.tell([f(p.conditions) for p in batch])
    return props


def test_mixed_integer_categorical_continuous_space():
    params = [
        ParameterSpec("T", 0.0, 1.0),
        ParameterSpec("n", 0, 30, kind="integer"),
        ParameterSpec("p", kind="categorical", choices=("a", "b", "c")),
    ]

    def f(c):
        y = -((c["T"] - 0.7) ** 2) - ((c["n"] - 20) / 30) ** 2 + {"a": 0.0, "b": 0.5, "c": 0.1}[c["p"]]
        return Observation(c, {"y": y})

    planner = BoTorchPlanner(params, [ObjectiveSpec("y")], seed=0, n_initial=6, **FAST)
    props = run(planner, f, steps=6, n=2)
    for p in props:
        assert isinstance(p.conditions["n"], int) and 0 <= p.conditions["n"] <= 30
        assert p.conditions["p"] in ("a", "b", "c") and 0.0 <= p.conditions["T"] <= 1.0
    assert {p.strategy for p in props[6:]} == {"qLogNEI"}
    assert len({key(p.conditions) for p in props}) == len(props)
    assert best_observed(planner.observations, planner.problem.objectives).conditions["p"] == "b"


def test_composition_sum_to_one_respected_by_every_proposal():
    params = [ParameterSpec(n, 0.0, 1.0) for n in ("Fe", "Co", "Ni")]
    simplex = LinearConstraintSpec(("Fe", "Co", "Ni"), (1.0, 1.0, 1.0), "==", 1.0)
    cap = LinearConstraintSpec(("Ni",), (1.0,), "<=", 0.6)
    planner = BoTorchPlanner(
        params, [ObjectiveSpec("y")], seed=0, n_initial=4, linear_constraints=[simplex, cap], **FAST
    )
    props = run(planner, lambda c: Observation(c, {"y": c["Fe"] * c["Co"] + 0.3 * c["Ni"]}), steps=4, n=2)
    assert props[0].strategy == "polytope" and props[-1].strategy == "qLogNEI"
    for p in props:
        assert sum(p.conditions.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.conditions["Ni"] <= 0.6 + 1e-6


def test_finite_candidate_set_of_100k_never_repeats():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(100_000, 2, generator=g, dtype=torch.double)
    candidates = [{"x1": float(a), "x2": float(b)} for a, b in X.tolist()]
    planner = BoTorchPlanner(
        UNIT2, [ObjectiveSpec("y", "minimize")], seed=0, n_initial=4, candidates=candidates, **FAST
    )
    allowed = {key(c) for c in candidates}

    def f(c):
        return Observation(c, {"y": (c["x1"] - 0.3) ** 2 + (c["x2"] - 0.8) ** 2})

    run(planner, f, steps=2, n=2)
    props = run(planner, f, steps=2, n=2, pending=[candidates[5]])
    seen = [key(o.conditions) for o in planner.observations]
    assert len(set(seen)) == len(seen) and set(seen) <= allowed
    assert key(candidates[5]) not in seen
    assert {p.strategy for p in props} == {"qLogNEI"}


def test_two_objectives_qlognehvi_with_reference_point():
    objectives = [ObjectiveSpec("f1", "minimize", reference=1.0), ObjectiveSpec("f2", "minimize", reference=1.0)]

    def f(c):  # a convex front f2 = (1 - sqrt(f1))^2 on x2 = 0
        return Observation(c, {"f1": c["x1"], "f2": (1 - math.sqrt(c["x1"])) ** 2 + c["x2"]})

    planner = BoTorchPlanner(UNIT2, objectives, seed=0, n_initial=5, **FAST)
    props = run(planner, f, steps=10, n=1)
    assert {p.strategy for p in props[5:]} == {"qLogNEHVI"}
    assert all(set(p.predicted) == {"f1", "f2"} for p in props[5:])
    assert sum(p.conditions["x2"] < 0.15 for p in props[5:]) >= 3  # pushed to the front
    assert len(pareto_front(planner.observations, objectives)) >= 2


def test_heteroscedastic_variances_become_fixed_noise():
    planner = BoTorchPlanner([ParameterSpec("x", 0.0, 1.0)], [ObjectiveSpec("y")], seed=0, n_initial=3, **FAST)
    obs = [Observation({"x": x}, {"y": math.sin(6 * x)}, {"y": 0.01 if x < 0.5 else 0.5}) for x in (0.1, 0.3, 0.6, 0.9)]
    planner.tell(obs)
    planner.ask()
    noise = planner.model.likelihood.noise.detach().reshape(-1)  # standardised units
    assert noise.numel() == 4 and float(noise[2] / noise[0]) == pytest.approx(50.0, rel=1e-6)


def test_failed_experiments_are_learned_as_a_feasibility_constraint():
    """Syntheses with x1 > 0.5 yield nothing; the best objective lies just beyond, so only the learned
    feasibility keeps proposals back."""

    def f(c):
        if c["x1"] > 0.5:
            return Observation(c, {}, failed=True)
        return Observation(c, {"y": c["x1"] + 0.2 * c["x2"]})

    planner = BoTorchPlanner(UNIT2, [ObjectiveSpec("y")], seed=0, n_initial=6, **FAST)
    props = run(planner, f, steps=12)
    bo = props[6:]
    assert all(0.0 <= p.predicted["feasibility"][0] <= 1.0 for p in bo)
    assert sum(p.conditions["x1"] <= 0.6 for p in bo) >= 5  # Sobol alone: 50 % would fail
    best = best_observed(planner.observations, planner.problem.objectives)
    assert best.outcomes["y"] > 0.6


def test_cost_aware_prefers_cheap_region_of_equal_value():
    """Two equal peaks; anneal time t costs 1 + 20 t. Cost-aware proposals gather at the cheap peak."""

    def f(c):
        y = math.exp(-((c["t"] - 0.15) ** 2) / 0.01) + math.exp(-((c["t"] - 0.85) ** 2) / 0.01)
        return Observation(c, {"y": y})

    params = [ParameterSpec("t", 0.0, 1.0, unit="h")]
    cost = CostSpec(fixed=1.0, per_unit=(("t", 20.0),))
    planner = BoTorchPlanner(params, [ObjectiveSpec("y")], seed=0, n_initial=4, cost=cost, **FAST)
    props = run(planner, f, steps=10)
    assert {p.strategy for p in props[4:]} == {"qLogNEI/cost"}
    assert sum(p.conditions["t"] < 0.5 for p in props[4:]) >= 5


def test_measurement_choice_by_information_per_cost():
    m = MeasurementSpec("scan", ("fast", "slow"), costs=(1.0, 10.0), noise_variances=(0.04, 1e-4))
    planner = BoTorchPlanner(
        [ParameterSpec("x", 0.0, 1.0)], [ObjectiveSpec("y")], seed=0, n_initial=3, measurement=m, **FAST
    )
    first = planner.ask()[0]
    assert first.conditions["scan"] == "fast"  # no model yet: cheapest
    planner.tell([Observation({"x": x, "scan": "fast"}, {"y": math.sin(5 * x)}) for x in (0.0, 0.2, 0.5, 0.8, 1.0)])
    p = planner.ask()[0]
    # while the model is unsure (posterior variance ~ fast-scan noise), screening with the cheap scan pays most
    assert p.strategy == "qLogNEI" and p.predicted["y"][1] ** 2 > 0.01 and p.conditions["scan"] == "fast"
    # once it is known to within the fast scan's noise, only the precise scan still informs
    dense = [Observation({"x": i / 40, "scan": "slow"}, {"y": math.sin(5 * i / 40)}) for i in range(41)]
    planner.tell(dense)
    p = planner.ask()[0]
    assert p.predicted["y"][1] ** 2 < 0.04 and p.conditions["scan"] == "slow"


def test_an_unobserved_measurement_level_takes_the_observed_noise_scaled_by_the_prior_ratio():
    # priors as 1 / counting time (0.25 s and 4 s per step): only their ratio matters once one level is observed
    m = MeasurementSpec("scan", ("quick", "long"), costs=(1.0, 16.0), noise_variances=(4.0, 0.25))
    planner = BoTorchPlanner(
        [ParameterSpec("x", 0.0, 1.0)], [ObjectiveSpec("y")], seed=0, n_initial=3, measurement=m, **FAST
    )
    assert planner._level_noise("y") == [4.0, 0.25]  # nothing reported: the priors
    reported = [
        Observation({"x": x, "scan": "quick"}, {"y": math.sin(5 * x)}, {"y": v})
        for x, v in ((0.1, 0.03), (0.4, 0.05), (0.7, 0.04))
    ]
    planner.tell(reported)
    quick, long = planner._level_noise("y")
    assert quick == pytest.approx(0.04)  # the median reported at that level
    assert long == pytest.approx(0.04 / 16)  # the quick scan's noise, times the ratio of the priors
    planner.tell([Observation({"x": 0.9, "scan": "long"}, {"y": math.sin(4.5)}, {"y": 0.001})])
    assert planner._level_noise("y") == pytest.approx([0.04, 0.001])  # each level its own once observed


def test_fixed_values_are_used_by_every_proposal():
    params = UNIT2 + [ParameterSpec("batch", kind="categorical", choices=("A", "B"))]
    planner = BoTorchPlanner(params, [ObjectiveSpec("y")], seed=0, n_initial=3, **FAST)
    props = run(
        planner, lambda c: Observation(c, {"y": c["x1"] - c["x2"]}), steps=4, n=2, fixed={"batch": "B", "x2": 0.25}
    )
    assert all(p.conditions["batch"] == "B" and p.conditions["x2"] == pytest.approx(0.25) for p in props)


def test_narrowing_and_widening_keep_the_data():
    planner = BoTorchPlanner([ParameterSpec("x", 0.0, 10.0)], [ObjectiveSpec("y")], seed=0, n_initial=3, **FAST)
    run(planner, lambda c: Observation(c, {"y": -((c["x"] - 2.0) ** 2)}), steps=5)
    narrow = planner.with_space([ParameterSpec("x", 1.0, 3.0)])
    assert len(narrow.observations) == 5
    p = narrow.ask()[0]
    assert 1.0 <= p.conditions["x"] <= 3.0 and p.strategy == "qLogNEI"
    wide = narrow.with_space([ParameterSpec("x", -10.0, 20.0)])
    assert wide.ask()[0].strategy == "qLogNEI"


def test_exploration_mode_spreads_points():
    planner = BoTorchPlanner(UNIT2, [ObjectiveSpec("phase_fraction")], seed=0, n_initial=4, mode="explore", **FAST)
    props = run(planner, lambda c: Observation(c, {"phase_fraction": math.tanh(5 * (c["x1"] - c["x2"]))}), steps=3, n=2)
    assert {p.strategy for p in props[4:]} == {"qNIPV"}
    X = torch.tensor([[p.conditions["x1"], p.conditions["x2"]] for p in props], dtype=torch.double)
    d = torch.cdist(X, X) + torch.eye(len(props), dtype=torch.double)
    assert float(d.min()) > 0.05


def test_baselines_resume_and_honour_candidates():
    cands = [{"x1": i / 9, "x2": j / 9} for i in range(10) for j in range(10)]
    for cls in (SobolPlanner, RandomPlanner):
        a = cls(UNIT2, [ObjectiveSpec("y")], seed=3, candidates=cands)
        first = a.ask(30)
        assert len({key(p.conditions) for p in first}) == 30
        a.tell([Observation(p.conditions, {"y": 0.0}) for p in first[:10]])
        b = cls.from_state_dict(a.state_dict())
        pend = [p.conditions for p in first[10:12]]
        assert [p.conditions for p in a.ask(3, pending=pend)] == [p.conditions for p in b.ask(3, pending=pend)]


def test_outcome_constraint_on_unobserved_failure_does_not_crash():
    planner = BoTorchPlanner(
        UNIT2, [ObjectiveSpec("y")], [OutcomeConstraintSpec("purity", ">=", 0.9)], seed=0, n_initial=2, **FAST
    )
    planner.tell([Observation({"x1": 0.1, "x2": 0.1}, {}, failed=True)] * 3)
    props = planner.ask(2)
    assert [p.strategy for p in props] == ["sobol", "sobol"]


def test_log_scaled_parameter_is_searched_in_log_space():
    planner = BoTorchPlanner(
        [ParameterSpec("t", 0.01, 100.0, log_scale=True, unit="h")], [ObjectiveSpec("y")], seed=0, n_initial=4, **FAST
    )
    run(planner, lambda c: Observation(c, {"y": -(math.log10(c["t"]) ** 2)}), steps=8)
    best = best_observed(planner.observations, planner.problem.objectives)
    assert 0.7 < best.conditions["t"] < 1.4


def test_resume_with_failures_and_pending_gives_the_same_next_proposals():
    def f(c):
        return Observation(c, {}, failed=True) if c["x1"] > 0.7 else Observation(c, {"y": c["x1"] * c["x2"]})

    a = BoTorchPlanner(UNIT2, [ObjectiveSpec("y")], seed=5, n_initial=5, **FAST)
    run(a, f, steps=7)
    pending = [p.conditions for p in a.ask(2)]
    b = BoTorchPlanner.from_state_dict(a.state_dict())
    pa, pb = a.ask(2, pending=pending), b.ask(2, pending=pending)
    assert [p.conditions for p in pa] == [p.conditions for p in pb]
    assert all(key(p.conditions) not in {key(c) for c in pending} for p in pa)


@pytest.mark.parametrize("n_obj", [1, 2])
def test_many_observations_use_a_pruned_baseline(n_obj):
    objectives = [ObjectiveSpec("f1", "minimize"), ObjectiveSpec("f2", "minimize", reference=2.0)][:n_obj]
    planner = BoTorchPlanner(UNIT2, objectives, [OutcomeConstraintSpec("f1", "<=", 0.8)], seed=0, **FAST)
    g = torch.Generator().manual_seed(0)
    X = torch.rand(52, 2, generator=g, dtype=torch.double).tolist()
    planner.tell([Observation({"x1": a, "x2": b}, {"f1": a + 0.1 * b, "f2": (1 - a) ** 2 + b}) for a, b in X])
    baseline = planner._baseline(*_fitted(planner))
    assert baseline.shape[0] == 48 if n_obj == 1 else 48 <= baseline.shape[0] < 52
    (p,) = planner.ask()
    assert p.strategy == ("qLogNEI" if n_obj == 1 else "qLogNEHVI")


def _fitted(planner):
    from agents.planner.models import fit_outcome_model

    training = planner._training(planner._encoded_observations())
    return fit_outcome_model(training.data), training
