"""Exceptions raised by the planner, each also a builtin so callers can catch either.

PlannerError
 ├── SpecError (ValueError)            a parameter / objective / constraint spec is malformed
 ├── ObservationError (ValueError)     an observation does not fit the search space
 └── ExhaustedError (RuntimeError)     no new proposal is left (finite set used up)
"""

from __future__ import annotations

__all__ = ["ExhaustedError", "ObservationError", "PlannerError", "SpecError"]


class PlannerError(Exception):
    """Root of every error raised by `agents.planner`."""


class SpecError(PlannerError, ValueError):
    """A specification (parameter, objective, constraint, request) is invalid."""


class ObservationError(PlannerError, ValueError):
    """An observation or pending point cannot be encoded in the search space."""


class ExhaustedError(PlannerError, RuntimeError):
    """No proposal can be made that does not repeat a told or pending point."""
