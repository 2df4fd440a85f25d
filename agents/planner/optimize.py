"""Acquisition optimisation over continuous, mixed and finite spaces, never returning a taken point."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.exceptions.warnings import BadInitialCandidatesWarning
from botorch.optim import optimize_acqf, optimize_acqf_discrete
from botorch.optim.initializers import initialize_q_batch
from botorch.optim.optimize_mixed import optimize_acqf_mixed_alternating
from torch import Tensor

from agents.planner.errors import ExhaustedError
from agents.planner.problem import PlannerConfig
from agents.planner.space import DTYPE, SearchSpace

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - optional
    threadpool_limits = None

__all__ = [
    "available",
    "enumerate_space",
    "initial_conditions",
    "is_duplicate",
    "limit_threads",
    "matches_any",
    "optimize_point",
]

LOCAL_SCALES = (0.01, 0.05, 0.2)
"""Standard deviations (unit-cube widths) of the perturbations of the incumbents in `initial_conditions`."""


def optimize_point(
    acqf: AcquisitionFunction,
    space: SearchSpace,
    config: PlannerConfig,
    fixed: dict[int, float],
    taken: Tensor,
    candidates: Tensor | None = None,
    incumbents: Tensor | None = None,
) -> tuple[Tensor | None, float | None]:
    """The best point for ``acqf`` that is not in ``taken``, as a ``d`` tensor, and its acquisition value.

    - finite set (``candidates``, ``N x d``): exhaustive batched evaluation of the unused candidates
      (``optimize_acqf_discrete``), so the pick is exact and never repeats;
    - integer / categorical columns: ``optimize_acqf_mixed_alternating`` (discrete local search alternating
      with L-BFGS-B on the continuous columns);
    - otherwise ``optimize_acqf`` with multi-start L-BFGS-B (with ``config.local_search``, started from
      `initial_conditions`, which also searches around the ``incumbents``); all restarts are ranked and the
      best one that does not repeat ``taken`` (after snapping) is returned.

    Args:
        acqf: The acquisition function (``b x 1 x d -> b``).
        space: The search space (bounds, levels, linear constraints).
        config: ``raw_samples``, ``num_restarts``, ``candidate_batch`` and ``allow_repeats``.
        fixed: ``{column: encoded value}`` to hold fixed.
        taken: An ``r x d`` tensor of encoded points that must not be returned (told and pending).
        candidates: The finite candidate set, if any.
        incumbents: A ``k x d`` tensor of the best points so far (used with ``config.local_search``).

    Returns:
        ``(x, value)``, or ``(None, None)`` when every optimiser restart landed on a taken point.
    """
    if candidates is not None:
        idx = available(candidates, fixed, taken, config.allow_repeats)
        if idx.numel() == 0:
            raise ExhaustedError("every candidate has been told or is pending")
        X, v = optimize_acqf_discrete(
            acqf, q=1, choices=candidates[idx], max_batch_size=config.candidate_batch, unique=True
        )
        return X[0], float(v.reshape(-1)[0])
    ineq, eq = space.botorch_linear_constraints()
    free_discrete = {i: space.levels(i).tolist() for i in space.integer_dims if i not in fixed}
    free_cat = {i: space.levels(i).tolist() for i in space.categorical_dims if i not in fixed}
    if free_discrete or free_cat:
        bounds = space.bounds.clone()
        for i, values in {**free_discrete, **free_cat}.items():
            bounds[0, i], bounds[1, i] = min(values), max(values)
        X, v = optimize_acqf_mixed_alternating(
            acqf,
            bounds=bounds,
            discrete_dims=free_discrete,
            cat_dims=free_cat,
            q=1,
            raw_samples=config.raw_samples,
            num_restarts=config.num_restarts,
            fixed_features=fixed or None,
            inequality_constraints=ineq or None,
            equality_constraints=eq or None,
        )
        Xs, vs = space.snap(X.reshape(1, -1)), v.reshape(-1)
    else:
        starts = None
        if config.local_search and not (ineq or eq):
            starts = initial_conditions(acqf, space.dim, config, fixed, incumbents)
        X, v = optimize_acqf(
            acqf,
            bounds=space.bounds,
            q=1,
            num_restarts=config.num_restarts,
            raw_samples=None if starts is not None else config.raw_samples,
            batch_initial_conditions=starts,
            fixed_features=fixed or None,
            inequality_constraints=ineq or None,
            equality_constraints=eq or None,
            return_best_only=False,
            options={"maxiter": 200},
        )
        Xs, vs = space.snap(X.reshape(-1, space.dim)), v.reshape(-1)
    for j in vs.argsort(descending=True).tolist():
        if config.allow_repeats or not is_duplicate(Xs[j], taken):
            return Xs[j].detach().clone(), float(vs[j])
    return None, None


def initial_conditions(
    acqf: AcquisitionFunction,
    dim: int,
    config: PlannerConfig,
    fixed: dict[int, float],
    incumbents: Tensor | None,
) -> Tensor:
    """Starting points of the acquisition optimiser in the unit cube, a ``num_restarts x 1 x dim`` tensor.

    ``raw_samples`` scrambled Sobol points, plus as many Gaussian perturbations of the ``incumbents`` (at the
    widths `LOCAL_SCALES`, clamped to the cube), are scored by ``acqf``; the best one and a Boltzmann draw of
    the rest (``initialize_q_batch``) start L-BFGS-B. This is BoTorch's ``sample_around_best`` idea, but with
    incumbents chosen by the planner (best *feasible* posterior means): once the model knows where the optimum
    roughly is, the improvement there lives in a region far smaller than ``1 / raw_samples`` of the cube -- a
    ridge along an outcome constraint's boundary -- which global samples alone miss, leaving the optimiser on
    a plateau elsewhere. Random draws come from torch's generator (the planner seeds it per ``ask``).
    """
    n_raw = config.raw_samples
    seed = int(torch.randint(0, 2**31 - 1, (1,)))
    X = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed).draw(n_raw, dtype=DTYPE)
    if incumbents is not None and incumbents.shape[0]:
        which = torch.randint(incumbents.shape[0], (n_raw,))
        scale = torch.tensor(LOCAL_SCALES, dtype=DTYPE)[torch.randint(len(LOCAL_SCALES), (n_raw,))]
        local = incumbents[which] + scale.unsqueeze(-1) * torch.randn(n_raw, dim, dtype=DTYPE)
        X = torch.cat([X, local.clamp(0.0, 1.0)])
    for i, v in fixed.items():
        X[:, i] = v
    X = X.unsqueeze(1)
    with torch.no_grad():
        values = torch.cat([acqf(chunk) for chunk in X.split(config.candidate_batch)])
    n = min(config.num_restarts, X.shape[0])
    best = int(values.argmax())
    rest = torch.cat([X[:best], X[best + 1 :]]), torch.cat([values[:best], values[best + 1 :]])
    if n == 1:
        return X[best : best + 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadInitialCandidatesWarning)  # a flat acquisition: random starts it is
        chosen, _ = initialize_q_batch(rest[0], rest[1], n=n - 1)
    return torch.cat([X[best : best + 1], chosen])


def available(candidates: Tensor, fixed: dict[int, float], taken: Tensor, allow_repeats: bool = False) -> Tensor:
    """Indices (``k``-dim long tensor) of the rows of ``candidates`` (``N x d``) that match ``fixed`` and,
    unless ``allow_repeats``, are not in ``taken`` (``r x d``)."""
    mask = torch.ones(candidates.shape[0], dtype=torch.bool)
    for i, v in fixed.items():
        mask &= (candidates[:, i] - v).abs() < 1e-9
    if taken.shape[0] and not allow_repeats:
        mask &= ~matches_any(candidates, taken)
    return mask.nonzero().squeeze(-1)


@contextmanager
def limit_threads(n: int | None) -> Iterator[None]:
    """Limit torch's intra-op threads and BLAS threads (scipy's L-BFGS-B) for the block, then restore them.

    On a shared machine, idle BLAS / OpenMP workers spin-wait; for the small matrices of a campaign one thread
    is several times faster.
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        if threadpool_limits is None:
            yield
        else:
            with threadpool_limits(limits=n, user_api="blas"):
                yield
    finally:
        torch.set_num_threads(before)


def matches_any(X: Tensor, Y: Tensor) -> Tensor:
    """For ``X`` (``n x d``) and ``Y`` (``r x d``): an ``n``-dim bool, row of ``X`` equals some row of ``Y``.

    Rows are compared on a ``1e-7`` grid through a 62-bit hash, so ``n`` may be large (1e5 candidates).
    """
    if Y.shape[0] == 0:
        return torch.zeros(X.shape[0], dtype=torch.bool)
    return torch.isin(_row_hash(X), _row_hash(Y))


def _row_hash(X: Tensor) -> Tensor:
    keys = (X * 1e7).round().long()
    mult = torch.tensor(
        [(0x9E3779B97F4A7C15 >> (3 * i)) % (2**61 - 1) | 1 for i in range(X.shape[-1])], dtype=torch.long
    )
    return (keys * mult).sum(-1)


def is_duplicate(x: Tensor, taken: Tensor) -> bool:
    """Whether the ``d``-dim point ``x`` equals a row of ``taken`` (``r x d``)."""
    return bool(taken.shape[0]) and bool(matches_any(x.unsqueeze(0), taken)[0])


def enumerate_space(space: SearchSpace) -> Tensor:
    """All points of a fully discrete space, an ``N x d`` tensor."""
    grids = [space.levels(i) for i in range(space.dim)]
    return torch.cartesian_prod(*grids).reshape(-1, space.dim)
