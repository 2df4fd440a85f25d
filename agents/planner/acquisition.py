"""Acquisition pieces: MC objectives and outcome constraints, the reference point, cost weighting.

Model outputs are addressed through an `OutcomeLayout`; samples ``Z`` handed to objectives and constraints
have shape ``sample_shape x batch_shape x q x m`` (BoTorch's convention), in original outcome units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.multi_objective.objective import GenericMCMultiOutputObjective
from botorch.acquisition.objective import GenericMCObjective
from botorch.models.model import Model
from botorch.utils.multi_objective.hypervolume import infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated
from torch import Tensor

from agents.planner.types import ObjectiveSpec, OutcomeConstraintSpec

__all__ = [
    "FEASIBILITY",
    "AdjustedLogAcquisition",
    "OutcomeLayout",
    "cost_adjustment",
    "feasibility_floor",
    "make_constraints",
    "make_multi_objective",
    "make_single_objective",
    "outcome_constraint_floor",
    "reference_point",
    "utilities",
]

FEASIBILITY = "feasibility"
"""Name of the model output that classifies experiments as working (latent > 0) or failing (latent < 0)."""


@dataclass(frozen=True)
class OutcomeLayout:
    """The order of model outputs: objective outcomes first, then other constrained outcomes, then
    feasibility."""

    names: tuple[str, ...]

    def index(self, name: str) -> int:
        return self.names.index(name)

    @property
    def m(self) -> int:
        return len(self.names)


def utilities(Y: Tensor, objectives: Sequence[ObjectiveSpec], layout: OutcomeLayout) -> Tensor:
    """Map outcome values ``... x m`` (layout order) to utilities to maximise, ``... x k`` for ``k``
    objectives."""
    cols = []
    for o in objectives:
        y = Y[..., layout.index(o.name)]
        if o.direction == "maximize":
            cols.append(y)
        elif o.direction == "minimize":
            cols.append(-y)
        else:
            cols.append(-((y - o.target) ** 2))
    return torch.stack(cols, dim=-1)


def make_single_objective(objective: ObjectiveSpec, layout: OutcomeLayout) -> GenericMCObjective:
    """An MC objective mapping ``Z`` (``s x b x q x m``) to the utility ``s x b x q`` of one objective."""
    return GenericMCObjective(lambda Z, X=None: utilities(Z, [objective], layout)[..., 0])


def make_multi_objective(objectives: Sequence[ObjectiveSpec], layout: OutcomeLayout) -> GenericMCMultiOutputObjective:
    """An MC multi-output objective mapping ``Z`` (``s x b x q x m``) to utilities ``s x b x q x k``."""
    objectives = tuple(objectives)
    return GenericMCMultiOutputObjective(lambda Z, X=None: utilities(Z, objectives, layout))


def make_constraints(
    constraints: Sequence[OutcomeConstraintSpec],
    layout: OutcomeLayout,
    scales: dict[str, float],
) -> list[Callable[[Tensor], Tensor]]:
    """Constraint callables in BoTorch's convention: ``c(Z) <= 0`` means feasible.

    Each maps samples ``Z`` (``s x b x q x m``) to ``s x b x q``. Violations are divided by the outcome's
    observed scale so that the sigmoid relaxation (``eta``) is equally sharp for every outcome. The learned
    feasibility output (if in ``layout``; the latent of a probit classifier) adds ``-Z_feasibility``.
    """
    out: list[Callable[[Tensor], Tensor]] = []
    for c in constraints:
        j, s, v = layout.index(c.name), max(scales.get(c.name, 1.0), 1e-12), c.value
        if c.op == "<=":
            out.append(lambda Z, j=j, s=s, v=v: (Z[..., j] - v) / s)
        else:
            out.append(lambda Z, j=j, s=s, v=v: (v - Z[..., j]) / s)
    if FEASIBILITY in layout.names:
        f = layout.index(FEASIBILITY)
        out.append(lambda Z, f=f: -Z[..., f])
    return out


def reference_point(objectives: Sequence[ObjectiveSpec], observed_utilities: Tensor) -> Tensor:
    """The hypervolume reference point in utility space, a ``k``-dim tensor.

    Given ``ObjectiveSpec.reference`` values are mapped to utility (``y``, ``-y`` or ``-(y - target)^2``);
    missing ones are inferred from the Pareto front of ``observed_utilities`` (``n x k``, feasible points)
    with BoTorch's ``infer_reference_point`` (the nadir pushed out by 10 % of the range).
    """
    k = len(objectives)
    inferred = torch.zeros(k, dtype=torch.double)
    if observed_utilities.shape[0] > 0:
        front = observed_utilities[is_non_dominated(observed_utilities)]
        inferred = infer_reference_point(front)
    ref = []
    for i, o in enumerate(objectives):
        ref.append(float(inferred[i]) if o.reference is None else o.utility(o.reference))
    return torch.tensor(ref, dtype=torch.double)


class AdjustedLogAcquisition(AcquisitionFunction):
    """A log-scale acquisition plus an additive log-factor: ``log a(X) + adjust(X)``.

    Used for expected improvement per unit cost (Snoek et al., 2012), ``adjust = -alpha log(sum_i cost(x_i))``,
    and for a floor on the probability that an experiment works, ``adjust = sum_i log sigmoid((P_i - p_min) / s)``.

    Args:
        acq_function: A log-scale acquisition function mapping ``b x q x d`` to ``b``.
        adjust: Maps ``b x q x d`` encoded points to a ``b`` log-factor.
    """

    _log = True

    def __init__(self, acq_function: AcquisitionFunction, adjust: Callable[[Tensor], Tensor]) -> None:
        super().__init__(model=acq_function.model)
        self.acq_function = acq_function
        self.adjust = adjust

    def forward(self, X: Tensor) -> Tensor:
        return self.acq_function(X) + self.adjust(X)

    def set_X_pending(self, X_pending: Tensor | None = None) -> None:
        self.acq_function.set_X_pending(X_pending)

    @property
    def X_pending(self) -> Tensor | None:  # type: ignore[override]
        return self.acq_function.X_pending


def cost_adjustment(log_cost: Callable[[Tensor], Tensor], alpha: float) -> Callable[[Tensor], Tensor]:
    """``X -> -alpha * log(sum_i cost(x_i))`` for ``log_cost`` mapping ``b x q x d`` to ``b x q``."""
    return lambda X: -alpha * torch.logsumexp(log_cost(X), dim=-1)


def feasibility_floor(model: Model, p_min: float, softness: float = 0.02) -> Callable[[Tensor], Tensor]:
    """``X -> sum_i log sigmoid((P(success | x_i) - p_min) / softness)`` for a probit classifier ``model``.

    ``P(success | x) = Phi(mu / sqrt(1 + sigma^2))`` from the latent posterior. The floor stops the planner from
    probing regions the classifier already believes fail, where constrained EI alone keeps probing because the
    objective model extrapolates improvement into them.
    """

    def adjust(X: Tensor) -> Tensor:
        post = model.posterior(X)
        mu, var = post.mean[..., 0], post.variance[..., 0]
        p = torch.special.ndtr(mu / (1 + var).sqrt())
        return torch.nn.functional.logsigmoid((p - p_min) / softness).sum(-1)

    return adjust


def outcome_constraint_floor(
    model: Model,
    constraints: Sequence[OutcomeConstraintSpec],
    layout: OutcomeLayout,
    p_min: float,
    softness: float = 0.1,
) -> Callable[[Tensor], Tensor]:
    """``X -> sum_i log sigmoid((log P_i - log p_min) / softness)``, ``P_i`` the probability that an experiment at
    ``x_i`` meets every outcome constraint: ``prod_c Phi(+-(bound_c - mu_c(x)) / sigma_c(x))`` from the GP
    posteriors of the constrained outcomes (independent outputs).

    The probabilistic constraint of Gelbart, Snoek & Adams (2014): a point the model believes is most likely out
    of specification is not run, however much improvement the objective model extrapolates there (a phase
    fraction of 1 above a transition temperature, where the crystallites would be largest). The floor acts on
    ``log P``, so below ``p_min`` it falls like ``(P / p_min)^(1 / softness)`` without limit: a penalty that levelled
    off (a sigmoid in ``P`` itself) would be outbid once the campaign has converged and the only large improvement
    left is the one extrapolated into the region that certainly fails.
    """
    columns = [(layout.index(c.name), c.value, c.op == "<=") for c in constraints]
    log_p_min = math.log(p_min)

    def adjust(X: Tensor) -> Tensor:
        post = model.posterior(X)
        mean, std = post.mean, post.variance.clamp_min(1e-18).sqrt()
        log_p = torch.zeros(mean.shape[:-1], dtype=mean.dtype)
        for j, bound, upper in columns:
            z = (bound - mean[..., j]) / std[..., j]
            log_p = log_p + torch.special.log_ndtr(z if upper else -z)
        return torch.nn.functional.logsigmoid((log_p - log_p_min) / softness).sum(-1)

    return adjust
