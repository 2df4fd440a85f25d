"""Space-filling designs: deterministic, prefix-consistent point sequences in the encoded search space.

Point ``k`` of a design depends only on ``(seed, k)``, so a planner that counts told and pending experiments
can resume the same sequence after a restart.
"""

from __future__ import annotations

from typing import Literal

import torch
from botorch.utils.sampling import get_polytope_samples
from torch import Tensor

from agents.planner.space import DTYPE, SearchSpace

__all__ = ["Design"]

_BLOCK = 64


class Design:
    """A seeded sequence of points in ``[0, 1]^d`` that respects the space's levels and linear constraints.

    Args:
        space: The search space.
        seed: Seed of the scrambled Sobol sequence (``method="sobol"``) or of the uniform stream
            (``"random"``).
        method: ``"sobol"`` (scrambled Sobol) or ``"random"`` (i.i.d. uniform). Spaces with linear constraints
            use a seeded hit-and-run polytope sampler for both, in blocks of 64 points.
        center_first: Make point 0 the centre of the box (a design's centre point, as Ax's default design
            starts), followed by the sequence. Spaces with linear constraints ignore it.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int,
        method: Literal["sobol", "random"] = "sobol",
        center_first: bool = False,
    ) -> None:
        self.space, self.seed, self.method, self.center_first = space, int(seed), method, center_first
        ineq, eq = space.botorch_linear_constraints()
        self._ineq, self._eq = ineq, eq

    @property
    def strategy(self) -> str:
        """The label proposals drawn from this design carry."""
        return "polytope" if (self._ineq or self._eq) else self.method

    def points(self, start: int, n: int, fixed_features: dict[int, float] | None = None) -> Tensor:
        """Points ``start .. start + n - 1`` of the sequence as an ``n x d`` tensor (snapped to levels).

        Args:
            start: Index of the first point (``>= 0``).
            n: Number of points.
            fixed_features: ``{column: encoded value}`` to impose; with linear constraints on a fixed column
                the points are re-drawn from the constrained slice (still deterministic in ``seed`` and
                ``start``).
        """
        fixed_features = fixed_features or {}
        d = self.space.dim
        if n <= 0:
            return torch.empty(0, d, dtype=DTYPE)
        constrained_cols = {int(i) for idx, _, _ in self._ineq + self._eq for i in idx}
        if not (self._ineq or self._eq):
            X = self._unconstrained(start, n)
        elif constrained_cols & set(fixed_features):
            X = self._polytope(start, n, fixed_features)
        else:
            X = self._polytope(start, n, {})
        for i, v in fixed_features.items():
            X[:, i] = v
        return self.space.snap(X)

    def _unconstrained(self, start: int, n: int) -> Tensor:
        d = self.space.dim
        if self.center_first:
            center = torch.full((1, d), 0.5, dtype=DTYPE)
            if start == 0:
                return torch.cat([center, self._sequence(0, n - 1)])
            return self._sequence(start - 1, n)
        return self._sequence(start, n)

    def _sequence(self, start: int, n: int) -> Tensor:
        d = self.space.dim
        if n <= 0:
            return torch.empty(0, d, dtype=DTYPE)
        if self.method == "sobol":
            engine = torch.quasirandom.SobolEngine(d, scramble=True, seed=self.seed)
            if start:
                engine.fast_forward(start)
            return engine.draw(n, dtype=DTYPE)
        gen = torch.Generator().manual_seed(self.seed)
        return torch.rand(start + n, d, generator=gen, dtype=DTYPE)[start:]

    def _polytope(self, start: int, n: int, fixed_features: dict[int, float]) -> Tensor:
        d = self.space.dim
        eq = list(self._eq) + [
            (torch.tensor([i]), torch.tensor([1.0], dtype=DTYPE), float(v)) for i, v in fixed_features.items()
        ]
        rows = []
        for b in range(start // _BLOCK, (start + n - 1) // _BLOCK + 1):
            block = get_polytope_samples(
                n=_BLOCK,
                bounds=self.space.bounds,
                inequality_constraints=self._ineq or None,
                equality_constraints=eq or None,
                seed=(self.seed * 1_000_003 + b + (0 if self.method == "sobol" else 500_009)) % (2**31),
                n_burnin=200,
                n_thinning=max(2, 2 * d),
            )
            rows.append(block.to(DTYPE))
        X = torch.cat(rows)
        off = start % _BLOCK
        return X[off : off + n].reshape(n, d).clone()
