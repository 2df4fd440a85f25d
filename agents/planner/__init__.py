"""Planners that decide the next experiments: a BoTorch Bayesian optimiser and random / Sobol baselines.

Data flows one way: `types` (specs, observations, proposals) -> `space` (encoding) -> `design` / `models` ->
`acquisition` -> `botorch_planner`. `make_planner` builds one by name, e.g. from a campaign file.
"""

from __future__ import annotations

from typing import Any

from agents.planner.baselines import RandomPlanner, SobolPlanner
from agents.planner.botorch_planner import BoTorchPlanner
from agents.planner.errors import ExhaustedError, ObservationError, PlannerError, SpecError
from agents.planner.problem import AskRequest, CostSpec, PlannerConfig, PlanningProblem
from agents.planner.protocol import Planner
from agents.planner.results import best_observed, is_feasible, pareto_front
from agents.planner.types import (
    LinearConstraintSpec,
    MeasurementSpec,
    ObjectiveSpec,
    Observation,
    OutcomeConstraintSpec,
    ParameterSpec,
    Proposal,
)

__all__ = [
    "PLANNERS",
    "AskRequest",
    "BoTorchPlanner",
    "CostSpec",
    "ExhaustedError",
    "LinearConstraintSpec",
    "MeasurementSpec",
    "Observation",
    "ObjectiveSpec",
    "ObservationError",
    "OutcomeConstraintSpec",
    "ParameterSpec",
    "Planner",
    "PlannerConfig",
    "PlannerError",
    "PlanningProblem",
    "Proposal",
    "RandomPlanner",
    "SobolPlanner",
    "SpecError",
    "best_observed",
    "is_feasible",
    "make_planner",
    "pareto_front",
    "planner_from_state_dict",
]

PLANNERS: dict[str, type[BoTorchPlanner]] = {
    "botorch": BoTorchPlanner,
    "random": RandomPlanner,
    "sobol": SobolPlanner,
}
"""Planner classes by name; `make_planner` looks names up here."""


def make_planner(name: str, **kwargs: Any) -> Planner:
    """Build a planner by name (``"botorch"``, ``"random"``, ``"sobol"``) with the `BoTorchPlanner` arguments.

    Example:
        >>> make_planner("sobol", parameters=[ParameterSpec("T", 0.0, 1.0)], objectives=[ObjectiveSpec("y")])
    """
    try:
        cls = PLANNERS[name]
    except KeyError:
        raise SpecError(f"unknown planner {name!r}; choose from {sorted(PLANNERS)}") from None
    return cls(**kwargs)


def planner_from_state_dict(state: dict[str, Any]) -> Planner:
    """Rebuild whichever planner wrote ``state`` (see ``state_dict()``)."""
    kind = state.get("kind")
    if kind not in PLANNERS:
        raise SpecError(f"unknown planner kind {kind!r} in state")
    return PLANNERS[kind].from_state_dict(state)
