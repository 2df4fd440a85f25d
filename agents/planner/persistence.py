"""Planner state as plain JSON data: problem, settings and observations (models are refitted,
deterministically)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from typing import Any

from agents.planner.errors import SpecError
from agents.planner.problem import CostSpec, PlannerConfig, PlanningProblem
from agents.planner.types import (
    LinearConstraintSpec,
    MeasurementSpec,
    ObjectiveSpec,
    Observation,
    OutcomeConstraintSpec,
    ParameterSpec,
)

__all__ = ["FORMAT", "dump_state", "load_state"]

FORMAT = "crucible.planner/1"


def dump_state(
    kind: str, problem: PlanningProblem, config: PlannerConfig, observations: Sequence[Observation]
) -> dict[str, Any]:
    """Serialise a planner's state to JSON-compatible data (lists, dicts, str, float, int, bool, None)."""
    names = [p.name for p in problem.parameters]
    return {
        "format": FORMAT,
        "kind": kind,
        "parameters": [asdict(p) for p in problem.parameters],
        "objectives": [asdict(o) for o in problem.objectives],
        "constraints": [asdict(c) for c in problem.constraints],
        "linear_constraints": [asdict(c) for c in problem.linear_constraints],
        "candidates": None
        if problem.candidates is None
        else {"names": names, "rows": [[_plain(c[n]) for n in names] for c in problem.candidates]},
        "measurement": None if problem.measurement is None else asdict(problem.measurement),
        "cost": None if problem.cost is None else asdict(problem.cost),
        "fractions": list(problem.fractions),
        "config": asdict(config),
        "observations": [
            {
                "conditions": {k: _plain(v) for k, v in o.conditions.items()},
                "outcomes": {k: float(v) for k, v in o.outcomes.items()},
                "variances": None if o.variances is None else {k: float(v) for k, v in o.variances.items()},
                "failed": bool(o.failed),
            }
            for o in observations
        ],
    }


def _plain(v: Any) -> str | int | float:
    """A JSON-native copy of a condition value (numpy scalars become Python numbers)."""
    if isinstance(v, str):
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    return float(v)


def load_state(state: Mapping[str, Any]) -> tuple[str, PlanningProblem, PlannerConfig, list[Observation]]:
    """Inverse of `dump_state`: ``(kind, problem, config, observations)``.

    Settings missing from the config of a state saved by an older version take `PlannerConfig`'s defaults.
    """
    if state.get("format") != FORMAT:
        raise SpecError(f"unknown planner state format {state.get('format')!r}; expected {FORMAT!r}")

    def build(cls: type, d: Mapping[str, Any]) -> Any:
        allowed = {f.name for f in fields(cls)}
        extra = set(d) - allowed
        if extra:
            raise SpecError(f"{cls.__name__}: unknown keys {sorted(extra)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    cands = state.get("candidates")
    candidates = None
    if cands is not None:
        candidates = tuple(dict(zip(cands["names"], row, strict=True)) for row in cands["rows"])
    cost = state.get("cost")
    if cost is not None:
        cost = dict(cost)
        cost["per_unit"] = tuple(tuple(x) for x in cost.get("per_unit", ()))
        cost["per_choice"] = tuple((n, tuple(tuple(p) for p in cs)) for n, cs in cost.get("per_choice", ()))
    problem = PlanningProblem(
        parameters=tuple(build(ParameterSpec, p) for p in state["parameters"]),
        objectives=tuple(build(ObjectiveSpec, o) for o in state["objectives"]),
        constraints=tuple(build(OutcomeConstraintSpec, c) for c in state["constraints"]),
        linear_constraints=tuple(build(LinearConstraintSpec, c) for c in state.get("linear_constraints", ())),
        candidates=candidates,
        measurement=None if state.get("measurement") is None else build(MeasurementSpec, state["measurement"]),
        cost=None if cost is None else CostSpec(**cost),
        fractions=tuple(state.get("fractions", ())),
    )
    config = build(PlannerConfig, state["config"])
    observations = [
        Observation(
            conditions=dict(o["conditions"]),
            outcomes={k: float(v) for k, v in o["outcomes"].items()},
            variances=None if o.get("variances") is None else {k: float(v) for k, v in o["variances"].items()},
            failed=bool(o.get("failed", False)),
        )
        for o in state["observations"]
    ]
    return state["kind"], problem, config, observations
