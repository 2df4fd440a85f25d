"""Planners that decide the next experiments: a BoTorch Bayesian optimiser and random / Sobol baselines.

Modules import one way: `types` (specs, observations, proposals) and `problem` (validated requests) ->
`space` (encoding to the unit cube) -> `design` (Sobol / polytope starts), `models` (GPs, failure classifier),
`acquisition` (objectives, constraints, cost), `optimize` (continuous, mixed, finite) -> `botorch_planner`
-> `baselines`. `make_planner` builds a planner by name, e.g. from a campaign file; `state_dict()` /
`planner_from_state_dict` persist it.
"""

from __future__ import annotations

import importlib
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
    "register_planner",
]

PLANNERS: dict[str, type] = {
    "botorch": BoTorchPlanner,
    "random": RandomPlanner,
    "sobol": SobolPlanner,
}
"""Planner classes by name; `make_planner` looks names up here."""


def register_planner(name: str, cls: type) -> None:
    """Make a planner class available to `make_planner` (and campaign files) under ``name``."""
    PLANNERS[name] = cls


def make_planner(name: str, **kwargs: Any) -> Planner:
    """Build a planner by name with the `BoTorchPlanner` arguments.

    Args:
        name: ``"botorch"``, ``"random"``, ``"sobol"``, a name given to `register_planner`, or an import path
            ``"package.module:ClassName"`` of any class whose instances satisfy `Planner` (Ax, BayBE, a
            user's own).
        kwargs: Passed to the class (``parameters``, ``objectives``, ``constraints``, ``seed``, ...).

    Example:
        >>> make_planner("sobol", parameters=[ParameterSpec("T", 0.0, 1.0)], objectives=[ObjectiveSpec("y")])
    """
    if name in PLANNERS:
        cls = PLANNERS[name]
    elif ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise SpecError(f"cannot import planner {name!r}: {e}") from None
    else:
        raise SpecError(f"unknown planner {name!r}; choose from {sorted(PLANNERS)} or give 'module:Class'")
    planner = cls(**kwargs)
    if not isinstance(planner, Planner):
        raise SpecError(f"{name!r} does not implement the Planner protocol (tell / ask)")
    return planner


def planner_from_state_dict(state: dict[str, Any]) -> Planner:
    """Rebuild whichever planner wrote ``state`` (see ``state_dict()``)."""
    kind = state.get("kind")
    if kind not in PLANNERS:
        raise SpecError(f"unknown planner kind {kind!r} in state")
    return PLANNERS[kind].from_state_dict(state)  # type: ignore[attr-defined]
