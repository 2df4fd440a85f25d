"""What an experiment's recorded outcomes mean for the campaign: the objective's value, feasibility, best so far.

Plain functions of the campaign file and the store's records (no planner, no instruments), so that reading a
campaign (``crucible status``, reports, :mod:`crucible`) does not load the planner's libraries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from orchestrator.spec import CampaignSpec, ObjectiveSpec, outcome
from orchestrator.store import ExperimentRecord, ExperimentStatus

__all__ = [
    "CampaignError",
    "best_so_far",
    "counts",
    "is_feasible",
    "measured",
    "non_dominated",
    "objective_value",
    "utility",
]


class CampaignError(RuntimeError):
    """A campaign that cannot start or continue; the message says why."""


def measured(spec: CampaignSpec, outcomes: dict[str, dict[str, float]], name: str) -> dict[str, float]:
    """The objective's or constraint's ``name`` in an experiment's outcomes: ``{"value", "std"}``, NaN if the
    analysis did not report it."""
    try:
        return outcome(outcomes, spec.quantity_key(name))
    except KeyError:
        return {"value": math.nan, "std": math.nan}


def utility(objective: ObjectiveSpec, value: float) -> float:
    """An objective's value as a number to maximise (minimise → negated, target → −|y − target|)."""
    if objective.direction == "minimize":
        return -value
    if objective.direction == "target":
        assert objective.target is not None
        return -abs(value - objective.target)
    return value


def objective_value(spec: CampaignSpec, outcomes: dict[str, dict[str, float]]) -> float:
    """The first objective as a number to maximise (see `utility`)."""
    objective = spec.objectives[0]
    return utility(objective, measured(spec, outcomes, objective.name)["value"])


def is_feasible(spec: CampaignSpec, outcomes: dict[str, dict[str, float]]) -> bool:
    """Whether measured outcomes satisfy every outcome constraint."""
    for constraint in spec.constraints:
        value = measured(spec, outcomes, constraint.name)["value"]
        if (constraint.op == "<=" and value > constraint.value) or (constraint.op == ">=" and value < constraint.value):
            return False
    return True


def counts(experiment: ExperimentRecord) -> bool:
    """An analysed experiment no operator has marked bad."""
    return experiment.status == ExperimentStatus.ANALYSED and experiment.excluded_reason is None


def best_so_far(spec: CampaignSpec, experiments: Sequence[ExperimentRecord]) -> list[float]:
    """Best feasible objective value (to maximise) after each experiment; NaN until one is feasible."""
    best, out = -math.inf, []
    for experiment in experiments:
        if counts(experiment) and is_feasible(spec, experiment.outcomes):
            best = max(best, objective_value(spec, experiment.outcomes))
        out.append(best if math.isfinite(best) else math.nan)
    return out


def non_dominated(
    spec: CampaignSpec, experiments: Sequence[ExperimentRecord], objectives: Sequence[ObjectiveSpec] | None = None
) -> list[ExperimentRecord]:
    """The experiments (in the order given) that no other one beats on every objective (the campaign's, or
    ``objectives``) and strictly on one, by `utility`; an experiment with an undetermined objective takes no part."""
    scored = []
    for e in experiments:
        u = [utility(o, measured(spec, e.outcomes, o.name)["value"]) for o in objectives or spec.objectives]
        if all(math.isfinite(x) for x in u):
            scored.append((e, u))
    return [
        e for e, u in scored if not any(all(a >= b for a, b in zip(v, u, strict=True)) and v != u for _, v in scored)
    ]
