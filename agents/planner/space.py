"""The search space: encodes conditions to the unit cube the models see, and decodes proposals back.

Every parameter owns one column of the encoded ``d``-dim input ``X``, with values in ``[0, 1]``:

- continuous: ``(x - low) / (high - low)``, in log space when ``log_scale``;
- integer: the same on the widened range ``[low - 1/2, high + 1/2]``, so value ``v`` owns the bin
  ``[(v - low) / k, (v - low + 1) / k]`` of width ``1 / k`` (``k = high - low + 1``) and sits at its centre;
- categorical with ``k`` choices: choice ``i`` is encoded as the bin centre ``(i + 1/2) / k``.

A uniform ``u`` in ``[0, 1]`` therefore decodes to a uniformly distributed level for every kind, so a Sobol
sequence in the cube is a space-filling design of the mixed space. Points that lie outside the current bounds
(data kept after the space was narrowed) encode outside ``[0, 1]`` and are still valid model inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from agents.planner.errors import ObservationError, SpecError
from agents.planner.types import Condition, LinearConstraintSpec, ParameterSpec

__all__ = ["SearchSpace"]

DTYPE = torch.double


class SearchSpace:
    """A validated, ordered set of parameters and linear constraints with an encoder to ``[0, 1]^d``.

    Args:
        parameters: The parameters, in column order; names must be unique.
        linear_constraints: Linear constraints on continuous, non-log parameters.

    Example:
        >>> space = SearchSpace([ParameterSpec("T", 300.0, 900.0), ParameterSpec("n", 1, 4, kind="integer")])
        >>> space.encode({"T": 600.0, "n": 2})
        tensor([0.5000, 0.3750], dtype=torch.float64)
    """

    def __init__(
        self,
        parameters: Sequence[ParameterSpec],
        linear_constraints: Sequence[LinearConstraintSpec] = (),
    ) -> None:
        self.parameters: tuple[ParameterSpec, ...] = tuple(parameters)
        if not self.parameters:
            raise SpecError("the search space needs at least one parameter")
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise SpecError(f"parameter names must be unique, got {names}")
        self.index: dict[str, int] = {n: i for i, n in enumerate(names)}
        self.linear_constraints: tuple[LinearConstraintSpec, ...] = tuple(linear_constraints)
        for c in self.linear_constraints:
            for n in c.names:
                p = self.parameters[self.index[n]] if n in self.index else None
                if p is None:
                    raise SpecError(f"linear constraint names unknown parameter {n!r}")
                if p.kind != "continuous" or p.log_scale:
                    raise SpecError(f"linear constraint on {n!r}: only continuous, linear-scale parameters allowed")

    # ------------------------------------------------------------------ shape
    @property
    def dim(self) -> int:
        """Number of encoded columns ``d`` (one per parameter)."""
        return len(self.parameters)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    @property
    def bounds(self) -> Tensor:
        """A ``2 x d`` tensor of encoded bounds (all ``[0, 1]``)."""
        return torch.stack([torch.zeros(self.dim, dtype=DTYPE), torch.ones(self.dim, dtype=DTYPE)])

    @property
    def categorical_dims(self) -> list[int]:
        return [i for i, p in enumerate(self.parameters) if p.kind == "categorical"]

    @property
    def integer_dims(self) -> list[int]:
        return [i for i, p in enumerate(self.parameters) if p.kind == "integer"]

    @property
    def is_continuous(self) -> bool:
        return all(p.kind == "continuous" for p in self.parameters)

    def levels(self, i: int) -> Tensor:
        """The encoded values a discrete column ``i`` may take: a ``k``-dim tensor of bin centres."""
        p = self.parameters[i]
        k = _n_levels(p)
        if p.kind == "categorical" or not p.log_scale:
            return (torch.arange(k, dtype=DTYPE) + 0.5) / k
        return torch.tensor([self._encode_value(p, v) for v in range(int(p.low), int(p.high) + 1)], dtype=DTYPE)

    def n_combinations(self) -> float:
        """Number of points in a fully discrete space (``inf`` if any parameter is continuous)."""
        out = 1.0
        for p in self.parameters:
            if p.kind == "continuous":
                return math.inf
            out *= _n_levels(p)
        return out

    # ------------------------------------------------------------------ encode
    def _encode_value(self, p: ParameterSpec, v: Condition) -> float:
        if p.kind == "categorical":
            assert p.choices is not None
            if v not in p.choices:
                raise ObservationError(f"{p.name}={v!r} is not one of {p.choices}")
            return (p.choices.index(v) + 0.5) / len(p.choices)  # type: ignore[arg-type]
        if isinstance(v, str) or isinstance(v, bool):
            raise ObservationError(f"{p.name}={v!r}: a number is needed")
        lo, hi = float(p.low), float(p.high)  # type: ignore[arg-type]
        if p.kind == "integer":
            lo, hi = lo - 0.5, hi + 0.5
        x = float(v)
        if p.log_scale:
            if x <= 0:
                raise ObservationError(f"{p.name}={v!r}: log-scaled parameter needs a positive value")
            return (math.log(x) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return (x - lo) / (hi - lo)

    def encode(self, conditions: Mapping[str, Condition]) -> Tensor:
        """Encode one condition dict into a ``d``-dim tensor; extra keys are ignored."""
        missing = [n for n in self.names if n not in conditions]
        if missing:
            raise ObservationError(f"conditions {dict(conditions)} lack parameter(s) {missing}")
        return torch.tensor([self._encode_value(p, conditions[p.name]) for p in self.parameters], dtype=DTYPE)

    def encode_many(self, conditions: Sequence[Mapping[str, Condition]]) -> Tensor:
        """Encode ``n`` condition dicts into an ``n x d`` tensor (``0 x d`` when empty)."""
        if len(conditions) == 0:
            return torch.empty(0, self.dim, dtype=DTYPE)
        return torch.stack([self.encode(c) for c in conditions])

    # ------------------------------------------------------------------ decode
    def snap(self, X: Tensor) -> Tensor:
        """Round every discrete column of ``X`` (``... x d``) to its nearest level and clamp all to ``[0,
        1]``.

        Snapping is idempotent and ``encode(decode(X)) == snap(X)`` up to float error.
        """
        X = X.clamp(0.0, 1.0).clone()
        for i, p in enumerate(self.parameters):
            if p.kind == "continuous":
                continue
            if p.kind == "categorical" or not p.log_scale:
                k = _n_levels(p)
                idx = (X[..., i] * k).floor().clamp(0, k - 1)
                X[..., i] = (idx + 0.5) / k
            else:
                lv = self.levels(i)
                X[..., i] = lv[(X[..., i].unsqueeze(-1) - lv).abs().argmin(dim=-1)]
        return X

    def decode(self, x: Tensor) -> dict[str, Condition]:
        """Decode one ``d``-dim encoded point into a condition dict (float / int / str values)."""
        x = self.snap(x)
        out: dict[str, Condition] = {}
        for i, p in enumerate(self.parameters):
            u = float(x[i])
            if p.kind == "categorical":
                assert p.choices is not None
                out[p.name] = p.choices[min(int(u * len(p.choices)), len(p.choices) - 1)]
                continue
            lo, hi = float(p.low), float(p.high)  # type: ignore[arg-type]
            if p.kind == "integer":
                if p.log_scale:
                    v = math.exp(math.log(lo - 0.5) + u * (math.log(hi + 0.5) - math.log(lo - 0.5)))
                else:
                    v = lo - 0.5 + u * (hi - lo + 1)
                out[p.name] = int(min(max(round(v), lo), hi))
            elif p.log_scale:
                out[p.name] = min(max(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))), lo), hi)
            else:
                out[p.name] = min(max(lo + u * (hi - lo), lo), hi)
        return out

    def contains(self, conditions: Mapping[str, Condition]) -> bool:
        """Whether a condition dict lies inside the current bounds and choices."""
        try:
            x = self.encode(conditions)
        except ObservationError:
            return False
        return bool(((x >= -1e-9) & (x <= 1 + 1e-9)).all())

    # ------------------------------------------------------------------ constraints
    def fixed_features(self, fixed: Mapping[str, Condition] | None) -> dict[int, float]:
        """Map ``{name: value}`` to BoTorch ``fixed_features`` ``{column: encoded value}`` (snapped to a
        level)."""
        out: dict[int, float] = {}
        for n, v in (fixed or {}).items():
            if n not in self.index:
                raise SpecError(f"fixed value for unknown parameter {n!r}; parameters are {self.names}")
            i = self.index[n]
            row = torch.full((self.dim,), 0.5, dtype=DTYPE)
            row[i] = self._encode_value(self.parameters[i], v)
            if not -1e-9 <= float(row[i]) <= 1 + 1e-9:
                raise SpecError(f"fixed value {n}={v!r} lies outside the parameter's bounds")
            out[i] = float(self.snap(row)[i])
        return out

    def botorch_linear_constraints(
        self,
    ) -> tuple[list[tuple[Tensor, Tensor, float]], list[tuple[Tensor, Tensor, float]]]:
        """Linear constraints in encoded space, in BoTorch's ``(indices, coefficients, rhs)`` form.

        Returns:
            ``(inequality, equality)``: inequalities mean ``sum_i X[indices[i]] * coefficients[i] >= rhs``,
            equalities ``== rhs``.
        """
        ineq: list[tuple[Tensor, Tensor, float]] = []
        eq: list[tuple[Tensor, Tensor, float]] = []
        for c in self.linear_constraints:
            idx, coef, rhs = [], [], float(c.value)
            for n, a in zip(c.names, c.coefficients, strict=True):
                p = self.parameters[self.index[n]]
                lo, hi = float(p.low), float(p.high)  # type: ignore[arg-type]
                idx.append(self.index[n])
                coef.append(a * (hi - lo))
                rhs -= a * lo
            t_idx, t_coef = torch.tensor(idx, dtype=torch.long), torch.tensor(coef, dtype=DTYPE)
            if c.op == "==":
                eq.append((t_idx, t_coef, rhs))
            elif c.op == ">=":
                ineq.append((t_idx, t_coef, rhs))
            else:
                ineq.append((t_idx, -t_coef, -rhs))
        return ineq, eq

    def satisfies_linear(self, X: Tensor, tol: float = 1e-6) -> Tensor:
        """Whether each row of ``X`` (``n x d``, encoded) satisfies the linear constraints: an ``n``-dim
        bool."""
        ok = torch.ones(X.shape[:-1], dtype=torch.bool)
        ineq, eq = self.botorch_linear_constraints()
        for idx, coef, rhs in ineq:
            ok &= (X[..., idx] * coef).sum(-1) >= rhs - tol
        for idx, coef, rhs in eq:
            ok &= ((X[..., idx] * coef).sum(-1) - rhs).abs() <= tol
        return ok


def _n_levels(p: ParameterSpec) -> int:
    if p.kind == "categorical":
        return len(p.choices)  # type: ignore[arg-type]
    return int(p.high) - int(p.low) + 1  # type: ignore[arg-type]
