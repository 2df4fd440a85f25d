"""Reading a campaign's results: the best observation so far, feasible first."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agents.planner.types import ObjectiveSpec, Observation, OutcomeConstraintSpec

__all__ = ["best_observed", "is_feasible", "pareto_front"]


def is_feasible(o: Observation, constraints: Sequence[OutcomeConstraintSpec]) -> bool:
    """Not failed, and every constrained outcome is measured and within its bound."""
    if o.failed:
        return False
    return all(c.name in o.outcomes and c.violation(o.outcomes[c.name]) == 0.0 for c in constraints)


def _violation(o: Observation, constraints: Sequence[OutcomeConstraintSpec]) -> float:
    """Total constraint violation, each relative to ``max(|bound|, 1)``; a missing outcome counts as
    infinite."""
    total = 0.0
    for c in constraints:
        if c.name not in o.outcomes:
            return float("inf")
        total += c.violation(o.outcomes[c.name]) / max(abs(c.value), 1.0)
    return total


def pareto_front(
    observations: Sequence[Observation],
    objectives: Sequence[ObjectiveSpec],
    constraints: Sequence[OutcomeConstraintSpec] = (),
) -> list[Observation]:
    """The feasible observations that no other feasible observation dominates (in utility, see
    `ObjectiveSpec`)."""
    usable = [
        o for o in observations if is_feasible(o, constraints) and all(ob.name in o.outcomes for ob in objectives)
    ]
    if not usable:
        return []
    U = torch.tensor([[ob.utility(o.outcomes[ob.name]) for ob in objectives] for o in usable], dtype=torch.double)
    keep = []
    for i in range(U.shape[0]):
        dominated = ((U >= U[i]).all(-1) & (U > U[i]).any(-1)).any()
        if not bool(dominated):
            keep.append(usable[i])
    return keep


def best_observed(
    observations: Sequence[Observation],
    objectives: Sequence[ObjectiveSpec],
    constraints: Sequence[OutcomeConstraintSpec] = (),
) -> Observation | None:
    """The best feasible observation, or the least infeasible one if none is feasible.

    With one objective the best is the largest utility (``y``, ``-y`` or ``-(y - target)^2``). With several,
    it is the Pareto-optimal observation that maximises the smallest min-max-normalised utility (the Chebyshev
    compromise with equal weights). Failed observations and those missing an objective are never returned;
    ``None`` when nothing usable exists.
    """
    usable = [o for o in observations if not o.failed and all(ob.name in o.outcomes for ob in objectives)]
    if not usable:
        return None
    feasible = [o for o in usable if is_feasible(o, constraints)]
    if not feasible:
        return min(usable, key=lambda o: _violation(o, constraints))
    if len(objectives) == 1:
        ob = objectives[0]
        return max(feasible, key=lambda o: ob.utility(o.outcomes[ob.name]))
    front = pareto_front(feasible, objectives)
    U = torch.tensor([[ob.utility(o.outcomes[ob.name]) for ob in objectives] for o in feasible], dtype=torch.double)
    lo, span = U.min(0).values, (U.max(0).values - U.min(0).values).clamp_min(1e-12)
    scores = [
        float(
            (
                (torch.tensor([ob.utility(o.outcomes[ob.name]) for ob in objectives], dtype=torch.double) - lo) / span
            ).min()
        )
        for o in front
    ]
    return front[max(range(len(front)), key=lambda i: scores[i])]
