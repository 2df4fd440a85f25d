"""The small interface every planner honours: ``tell`` what happened, ``ask`` what to do next."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from agents.planner.types import Condition, Observation, Proposal

__all__ = ["Planner"]


@runtime_checkable
class Planner(Protocol):
    """A decision maker for the next experiments.

    Implementations must be deterministic in their seed and told data: the same observations, pending points
    and seed give the same proposals, so a restarted campaign continues where it stopped.
    """

    def tell(self, observations: Sequence[Observation]) -> None:
        """Add finished experiments (successful or ``failed``)."""
        ...

    def ask(
        self,
        n: int = 1,
        pending: Sequence[Mapping[str, Condition]] = (),
        fixed: Mapping[str, Condition] | None = None,
    ) -> list[Proposal]:
        """Propose ``n`` experiments, none repeating a ``pending`` one, all using the ``fixed`` values."""
        ...
