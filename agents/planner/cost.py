"""Experiment cost as a differentiable function of encoded conditions, known in advance or learned."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from agents.planner.models import OutcomeData, fit_outcome_model
from agents.planner.problem import CostSpec
from agents.planner.space import SearchSpace
from agents.planner.types import Observation

__all__ = ["make_log_cost"]


def _column_value(space: SearchSpace, X: Tensor, i: int) -> Tensor:
    """Differentiable original-unit value of continuous / integer column ``i`` of ``X`` (``... x d``)."""
    p = space.parameters[i]
    lo, hi = float(p.low), float(p.high)  # type: ignore[arg-type]
    if p.kind == "integer":
        lo, hi = lo - 0.5, hi + 0.5
    u = X[..., i]
    if p.log_scale:
        return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
    return lo + u * (hi - lo)


def make_log_cost(
    spec: CostSpec,
    space: SearchSpace,
    encode_ok: Sequence[tuple[Observation, Tensor]],
) -> Callable[[Tensor], Tensor] | None:
    """Build ``log_cost(X)`` mapping encoded ``b x q x d`` points to ``b x q`` log costs.

    A known cost (``fixed``, ``per_unit``, ``per_choice``) is evaluated exactly; a learned one (``outcome``)
    is the posterior mean of a GP on ``log(cost)`` fitted to the successful observations that report it.
    Returns ``None`` when a learned cost has fewer than two observations yet.
    """
    if spec.outcome is not None:
        rows = [
            (x, math.log(o.outcomes[spec.outcome]))
            for o, x in encode_ok
            if not o.failed and o.outcomes.get(spec.outcome, 0.0) > 0
        ]
        if len(rows) < 2:
            return None
        X = torch.stack([r[0] for r in rows])
        Y = torch.tensor([[r[1]] for r in rows], dtype=X.dtype)
        model = fit_outcome_model([OutcomeData(spec.outcome, X, Y)], space.categorical_dims)

        def learned(X: Tensor) -> Tensor:
            return model.posterior(X).mean[..., 0]

        return learned

    per_unit = [(space.index[n], c) for n, c in spec.per_unit]
    per_choice = []
    for n, pairs in spec.per_choice:
        i = space.index[n]
        choices = space.parameters[i].choices or ()
        table = dict(pairs)
        per_choice.append((i, torch.tensor([table.get(ch, 0.0) for ch in choices], dtype=torch.double)))

    def known(X: Tensor) -> Tensor:
        cost = torch.full(X.shape[:-1], spec.fixed, dtype=X.dtype)
        for i, c in per_unit:
            cost = cost + c * _column_value(space, X, i)
        for i, table in per_choice:
            k = table.numel()
            idx = (X[..., i].detach() * k).floor().clamp(0, k - 1).long()
            cost = cost + table[idx]
        return cost.clamp_min(1e-12).log()

    return known
