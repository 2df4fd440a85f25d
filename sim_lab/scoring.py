"""Known optima of simulated scenarios, so a campaign's result can be scored against the ground truth."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import differential_evolution, minimize

from sim_lab.scenarios.base import Scenario

__all__ = ["Constraint", "Optimum", "Score", "score", "true_optimum"]

Constraint = tuple[str, str, float]
"""``(quantity name, "<=" or ">=", threshold)``."""

Direction = Literal["maximize", "minimize"]

_PENALTY = 1e6
_FEASIBILITY_TOLERANCE = 1e-9


class Score(NamedTuple):
    """The true objective value at some conditions and whether every constraint holds there."""

    value: float
    feasible: bool


class Optimum(NamedTuple):
    """The best feasible conditions of a scenario for one objective and the true objective value there."""

    conditions: dict[str, float]
    value: float


def _check(scenario: Scenario, objective: str, direction: str, constraints: Sequence[Constraint]) -> None:
    names = set(scenario.quantities({p.name: p.low for p in scenario.parameters}))
    if objective not in names:
        raise ValueError(f"{scenario.name}: unknown objective {objective!r}; quantities are {sorted(names)}")
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    for name, op, _ in constraints:
        if name not in names:
            raise ValueError(f"{scenario.name}: unknown constrained quantity {name!r}; quantities are {sorted(names)}")
        if op not in ("<=", ">="):
            raise ValueError(f"constraint on {name!r}: operator must be '<=' or '>=', got {op!r}")


def _slacks(quantities: Mapping[str, float], constraints: Sequence[Constraint]) -> list[float]:
    """Per constraint, how far inside it the quantities are (negative when violated)."""
    return [
        (threshold - quantities[name]) if op == "<=" else (quantities[name] - threshold)
        for name, op, threshold in constraints
    ]


def score(
    scenario: Scenario,
    conditions: Mapping[str, float],
    objective: str,
    direction: Direction,
    constraints: Sequence[Constraint] = (),
) -> Score:
    """The true value of ``objective`` at ``conditions`` and whether all ``constraints`` are met there."""
    _check(scenario, objective, direction, constraints)
    quantities = scenario.quantities(conditions)
    feasible = all(s >= -_FEASIBILITY_TOLERANCE for s in _slacks(quantities, constraints))
    return Score(value=float(quantities[objective]), feasible=feasible)


_cache: dict[tuple[object, ...], Optimum] = {}
_cache_lock = threading.Lock()


def true_optimum(
    scenario: Scenario,
    objective: str,
    direction: Direction,
    constraints: Sequence[Constraint] = (),
) -> Optimum:
    """The constrained optimum of ``objective`` over the scenario's parameter box, from the ground truth.

    Differential evolution (seeded, deterministic) on the unit cube minimises ``∓objective + 1e6 · Σ relative
    violation``; SLSQP with the constraints stated exactly then polishes the best member. The answer is cached
    per (scenario, objective, direction, constraints). Raises ValueError if no feasible point is found.
    """
    _check(scenario, objective, direction, constraints)
    constraints = tuple((str(n), str(op), float(t)) for n, op, t in constraints)
    key = (scenario, objective, direction, constraints)
    with _cache_lock:
        if key in _cache:
            found = _cache[key]
            return Optimum(dict(found.conditions), found.value)
    found = _optimise(scenario, objective, direction, constraints)
    with _cache_lock:
        _cache[key] = found
    return Optimum(dict(found.conditions), found.value)


def _optimise(scenario: Scenario, objective: str, direction: str, constraints: tuple[Constraint, ...]) -> Optimum:
    low = np.array([p.low for p in scenario.parameters])
    span = np.array([p.high - p.low for p in scenario.parameters])
    names = [p.name for p in scenario.parameters]
    sign = -1.0 if direction == "maximize" else 1.0
    scales = [max(abs(t), 1e-6) for _, _, t in constraints]

    def conditions_at(u: NDArray[np.float64]) -> dict[str, float]:
        return {n: float(v) for n, v in zip(names, low + np.clip(u, 0.0, 1.0) * span, strict=True)}

    def quantities_at(u: NDArray[np.float64]) -> dict[str, float]:
        return scenario.quantities(conditions_at(u))

    def penalised(u: NDArray[np.float64]) -> float:
        q = quantities_at(u)
        violation = sum(max(0.0, -s) / scale for s, scale in zip(_slacks(q, constraints), scales, strict=True))
        return sign * q[objective] + _PENALTY * violation

    bounds = [(0.0, 1.0)] * len(names)
    evolved = differential_evolution(
        penalised, bounds, seed=0, popsize=20, maxiter=300, tol=1e-10, polish=False, init="sobol"
    )
    candidates = [np.asarray(evolved.x)]
    slsqp_constraints = [
        {"type": "ineq", "fun": (lambda u, i=i: _slacks(quantities_at(u), constraints)[i] / scales[i])}
        for i in range(len(constraints))
    ]
    polished = minimize(
        lambda u: sign * quantities_at(u)[objective],
        evolved.x,
        method="SLSQP",
        bounds=bounds,
        constraints=slsqp_constraints,
        options={"ftol": 1e-12, "maxiter": 200},
    )
    candidates.append(np.clip(polished.x, 0.0, 1.0))
    best: Optimum | None = None
    for u in candidates:
        q = quantities_at(u)
        if any(s < -_FEASIBILITY_TOLERANCE for s in _slacks(q, constraints)):
            continue
        if best is None or sign * q[objective] < sign * best.value:
            best = Optimum(conditions_at(u), float(q[objective]))
    if best is None:
        raise ValueError(f"{scenario.name}: no feasible conditions found for constraints {list(constraints)}")
    return best
