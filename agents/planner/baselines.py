"""Baseline planners through the same protocol: a scrambled Sobol sequence and i.i.d. uniform random
search."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from agents.planner import persistence
from agents.planner.botorch_planner import BoTorchPlanner
from agents.planner.design import Design
from agents.planner.errors import SpecError
from agents.planner.problem import AskRequest, PlannerConfig, PlanningProblem
from agents.planner.space import DTYPE
from agents.planner.types import Proposal

__all__ = ["RandomPlanner", "SobolPlanner"]


class SobolPlanner(BoTorchPlanner):
    """Every proposal from the scrambled Sobol design (seeded by ``seed``), never a model.

    Same constructor and protocol as `BoTorchPlanner`; ``n_initial``, ``raw_samples`` and ``num_restarts`` are
    accepted and ignored. Finite candidate sets, fixed values, pending points and linear constraints are
    honoured.
    """

    name = "sobol"
    _method = "sobol"

    def _setup(self, problem: PlanningProblem, config: PlannerConfig) -> None:
        super()._setup(problem, config)
        self.design = Design(self.space, config.seed, self._method)  # type: ignore[arg-type]

    def ask_request(self, request: AskRequest) -> list[Proposal]:
        fixed = self.space.fixed_features(request.fixed)
        X_pending = self.space.encode_many(request.pending)
        encoded = self._encoded_observations()
        X_told = torch.stack([x for _, x in encoded]) if encoded else torch.empty(0, self.space.dim, dtype=DTYPE)
        avoid = X_pending if self.config.allow_repeats else torch.cat([X_pending, self.space.snap(X_told)])
        X, strategies = self._design(len(self._observations) + len(request.pending), request.n, fixed, avoid)
        return self._proposals(X, strategies, [None] * request.n, None, None)

    def state_dict(self) -> dict[str, Any]:
        return persistence.dump_state(self.name, self.problem, self.config, self._observations)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> BoTorchPlanner:
        kind, problem, config, observations = persistence.load_state(state)
        if kind != cls.name:
            raise SpecError(f"state is for a {kind!r} planner, not {cls.name!r}")
        planner = cls.from_problem(problem, config)
        planner.tell(observations)
        return planner


class RandomPlanner(SobolPlanner):
    """Every proposal uniformly at random (i.i.d., seeded); from a finite set, a uniformly random unused
    pick."""

    name = "random"
    _method = "random"

    def _nearest_candidate(self, u: Tensor, fixed: dict[int, float], taken: Tensor) -> Tensor | None:
        idx = self._available(fixed, taken)
        if idx.numel() == 0:
            return None
        pick = min(int(float(u[0]) * idx.numel()), idx.numel() - 1)
        return self._candidates[idx[pick]].clone()  # type: ignore[index]
