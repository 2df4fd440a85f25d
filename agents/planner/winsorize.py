"""Winsorisation of training outcomes: clip the tail that only tells the model "bad", so the GP spends its
flexibility where the optimum is.

The cutoffs follow Tukey's box-plot rule as Ax's ``Winsorize`` transform does: for an objective to maximise,
values below ``q1 - 1.5 IQR`` are raised to that cutoff (to minimise: values above ``q3 + 1.5 IQR`` lowered);
for an outcome constraint ``y <= b``, values above ``max(q3, b) + 1.5 (max(q3, b) - q1)`` are lowered (and the
mirror image for ``y >= b``), which never makes an infeasible value feasible. A sharp step in a constrained
outcome (a phase fraction jumping from 0 to 1 across a transition temperature) then becomes a smaller step the
GP can follow near the bound. Several objectives and target objectives are not clipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from agents.planner.types import ObjectiveSpec, OutcomeConstraintSpec

__all__ = ["winsorization_cutoffs"]


def _quartiles(Y: Tensor) -> tuple[float, float]:
    return float(torch.quantile(Y, 0.25, interpolation="lower")), float(torch.quantile(Y, 0.75, interpolation="higher"))


def winsorization_cutoffs(
    name: str,
    Y: Tensor,
    objectives: Sequence[ObjectiveSpec],
    constraints: Sequence[OutcomeConstraintSpec],
) -> tuple[float, float]:
    """``(low, high)`` cutoffs for the observed values ``Y`` of outcome ``name`` (``-inf, inf``: no clipping)."""
    low, high = -math.inf, math.inf
    q1, q3 = _quartiles(Y.reshape(-1))
    iqr = q3 - q1
    if len(objectives) == 1 and objectives[0].name == name:
        if objectives[0].direction == "maximize":
            low = q1 - 1.5 * iqr
        elif objectives[0].direction == "minimize":
            high = q3 + 1.5 * iqr
    for c in constraints:
        if c.name != name:
            continue
        if c.op == "<=":
            top = max(q3, c.value)
            high = min(high, top + 1.5 * (top - q1))
        else:
            bottom = min(q1, c.value)
            low = max(low, bottom - 1.5 * (q3 - bottom))
    return low, high
