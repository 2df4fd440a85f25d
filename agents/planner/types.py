"""Value objects exchanged with a planner: what may vary, what is wanted, what was seen, what to do next."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from agents.planner.errors import SpecError

__all__ = [
    "Condition",
    "LinearConstraintSpec",
    "MeasurementSpec",
    "Observation",
    "ObjectiveSpec",
    "OutcomeConstraintSpec",
    "ParameterSpec",
    "Proposal",
]

Condition = float | int | str
"""One parameter value: a float (continuous), an int (integer) or a str (categorical choice)."""


@dataclass(frozen=True)
class ParameterSpec:
    """One synthesis or measurement condition the planner may vary.

    Args:
        name: Unique parameter name, e.g. ``"anneal_T_C"``.
        low: Lower bound (inclusive) in ``unit``; required unless categorical.
        high: Upper bound (inclusive) in ``unit``; required unless categorical.
        kind: ``"continuous"``, ``"integer"`` (whole numbers in ``[low, high]``) or ``"categorical"``.
        log_scale: Model and search the parameter in log space (requires ``low > 0``).
        choices: The allowed values of a categorical parameter (at least one, unique).
        unit: Unit of ``low``/``high`` and of values, e.g. ``"degC"``; informational only.

    Example:
        >>> ParameterSpec("anneal_T", 300.0, 900.0, unit="degC")
        >>> ParameterSpec("precursor", kind="categorical", choices=("nitrate", "acetate"))
    """

    name: str
    low: float | None = None
    high: float | None = None
    kind: Literal["continuous", "integer", "categorical"] = "continuous"
    log_scale: bool = False
    choices: tuple[str, ...] | None = None
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise SpecError("a parameter needs a non-empty name")
        if self.kind == "categorical":
            if not self.choices:
                raise SpecError(f"categorical parameter {self.name!r} needs at least one choice")
            if len(set(self.choices)) != len(self.choices):
                raise SpecError(f"categorical parameter {self.name!r} has repeated choices: {self.choices}")
            if self.log_scale:
                raise SpecError(f"categorical parameter {self.name!r} cannot be log-scaled")
            object.__setattr__(self, "choices", tuple(self.choices))
            return
        if self.kind not in ("continuous", "integer"):
            raise SpecError(f"parameter {self.name!r}: unknown kind {self.kind!r}")
        if self.choices is not None:
            raise SpecError(f"parameter {self.name!r}: choices are only for categorical parameters")
        if self.low is None or self.high is None:
            raise SpecError(f"{self.kind} parameter {self.name!r} needs low and high")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise SpecError(f"parameter {self.name!r}: need finite low <= high, got [{self.low}, {self.high}]")
        if self.kind == "continuous" and self.low == self.high:
            raise SpecError(f"continuous parameter {self.name!r} has an empty range [{self.low}, {self.high}]")
        if self.kind == "integer" and (self.low != int(self.low) or self.high != int(self.high)):
            raise SpecError(f"integer parameter {self.name!r} needs whole bounds, got [{self.low}, {self.high}]")
        if self.log_scale and self.low <= 0:
            raise SpecError(f"log-scaled parameter {self.name!r} needs low > 0, got {self.low}")


@dataclass(frozen=True)
class ObjectiveSpec:
    """One measured outcome to optimise.

    Args:
        name: Outcome name as it appears in ``Observation.outcomes``.
        direction: ``"maximize"``, ``"minimize"`` or ``"target"`` (hit ``target``: minimise ``(y -
            target)^2``).
        target: The value to hit; required iff ``direction == "target"``.
        reference: Multi-objective only: the worst value still worth anything, in the outcome's units
            (the hypervolume reference point). Inferred from the data when omitted.
    """

    name: str
    direction: Literal["maximize", "minimize", "target"] = "maximize"
    target: float | None = None
    reference: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise SpecError("an objective needs a non-empty name")
        if self.direction not in ("maximize", "minimize", "target"):
            raise SpecError(f"objective {self.name!r}: unknown direction {self.direction!r}")
        if (self.direction == "target") != (self.target is not None):
            raise SpecError(f"objective {self.name!r}: target must be given iff direction is 'target'")

    def utility(self, y: float) -> float:
        """The value to maximise for outcome ``y``: ``y``, ``-y`` or ``-(y - target)^2``."""
        if self.direction == "maximize":
            return y
        if self.direction == "minimize":
            return -y
        return -((y - self.target) ** 2)  # type: ignore[operator]


@dataclass(frozen=True)
class OutcomeConstraintSpec:
    """A bound on a measured outcome, e.g. phase purity ``>= 0.9``."""

    name: str
    op: Literal["<=", ">="]
    value: float

    def __post_init__(self) -> None:
        if self.op not in ("<=", ">="):
            raise SpecError(f"outcome constraint on {self.name!r}: op must be '<=' or '>=', got {self.op!r}")
        if not math.isfinite(self.value):
            raise SpecError(f"outcome constraint on {self.name!r}: value must be finite")

    def violation(self, y: float) -> float:
        """How far ``y`` is on the wrong side of the bound (0 when satisfied), in the outcome's units."""
        return max(0.0, y - self.value) if self.op == "<=" else max(0.0, self.value - y)


@dataclass(frozen=True)
class LinearConstraintSpec:
    """A linear constraint on continuous parameters: ``sum_i coefficients[i] * x[names[i]]  op  value``.

    Example (fractions that sum to one):
        >>> LinearConstraintSpec(("x_Fe", "x_Co", "x_Ni"), (1.0, 1.0, 1.0), "==", 1.0)
    """

    names: tuple[str, ...]
    coefficients: tuple[float, ...]
    op: Literal["<=", ">=", "=="]
    value: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "coefficients", tuple(float(c) for c in self.coefficients))
        if not self.names or len(self.names) != len(self.coefficients):
            raise SpecError("linear constraint: names and coefficients must be non-empty and of equal length")
        if len(set(self.names)) != len(self.names):
            raise SpecError(f"linear constraint: repeated names {self.names}")
        if self.op not in ("<=", ">=", "=="):
            raise SpecError(f"linear constraint: op must be '<=', '>=' or '==', got {self.op!r}")


@dataclass(frozen=True)
class MeasurementSpec:
    """A choice of how to measure (a fidelity), traded against its cost.

    Each level measures the same quantity with a different noise: a fast low-count scan is noisy and cheap, a
    slow high-count scan is precise and expensive. The planner picks the level with the largest expected
    information gain per unit cost at the chosen conditions.

    Args:
        name: Name under which the choice is returned in ``Proposal.conditions``.
        levels: Level names, e.g. ``("fast", "slow")``.
        costs: Cost of one measurement at each level (any consistent unit, e.g. minutes), all > 0.
        noise_variances: Prior noise variance of each objective outcome at each level, in squared outcome
            units; replaced by the median of observed ``Observation.variances`` at that level once available.
            Their ratios also carry over: a level not yet observed gets an observed level's median times the
            ratio of the two priors, so priors proportional to ``1 / counting_time`` are enough.
    """

    name: str
    levels: tuple[str, ...]
    costs: tuple[float, ...]
    noise_variances: tuple[float, ...]

    def __post_init__(self) -> None:
        for attr in ("levels", "costs", "noise_variances"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        k = len(self.levels)
        if k == 0 or len(self.costs) != k or len(self.noise_variances) != k:
            raise SpecError("measurement: levels, costs and noise_variances must be non-empty, equal length")
        if min(self.costs) <= 0 or min(self.noise_variances) <= 0:
            raise SpecError("measurement: costs and noise variances must be > 0")


@dataclass(frozen=True)
class Observation:
    """What one experiment gave.

    Args:
        conditions: Parameter name -> value actually used (may also hold a measurement level).
        outcomes: Outcome name -> measured value (original units). May be empty when ``failed``.
        variances: Outcome name -> measurement variance (squared units), e.g. from an analysis fit.
        failed: The experiment produced nothing usable (no sample, analysis could not fit).
    """

    conditions: dict[str, Condition]
    outcomes: dict[str, float]
    variances: dict[str, float] | None = None
    failed: bool = False


DESIGN_STRATEGIES = frozenset({"sobol", "random"})
"""Strategies that choose points without a model (the initial design, the Sobol and random planners)."""


@dataclass(frozen=True)
class Proposal:
    """One experiment the planner proposes, with the reason for it.

    Args:
        conditions: Parameter name -> value to run (continuous float, integer int, categorical str).
        strategy: How it was chosen: ``"sobol"``, ``"random"``, ``"qLogNEI"``, ``"qLogNEHVI"``, ``"qNIPV"``,
            ...
        acquisition_value: Acquisition value of this point (log scale for the LogEI family), if any.
        predicted: Outcome name -> posterior ``(mean, std)`` at ``conditions`` in original units.
    """

    conditions: dict[str, Condition]
    strategy: str
    acquisition_value: float | None = None
    predicted: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def model_made(self) -> bool:
        """Whether a model chose it (an acquisition function, or a plug-in's own model), not the space-filling
        initial design (``sobol``, ``random``) nor its fallback when the acquisition optimiser found nothing."""
        return self.strategy not in DESIGN_STRATEGIES and not self.strategy.endswith("-fallback")
