"""Validated, frozen request objects: the planning problem, the optimiser settings and one ``ask``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from agents.planner.errors import SpecError
from agents.planner.fractions import logit_of_bound
from agents.planner.types import (
    Condition,
    LinearConstraintSpec,
    MeasurementSpec,
    ObjectiveSpec,
    OutcomeConstraintSpec,
    ParameterSpec,
)

__all__ = [
    "DEFAULT_ACQUISITION",
    "DEFAULT_EXPLORATION_WEIGHT",
    "DEFAULT_KERNEL",
    "DEFAULT_MIN_NOISE",
    "MAX_EXPLORATION_WEIGHT",
    "AskRequest",
    "CostSpec",
    "PlannerConfig",
    "PlanningProblem",
]

Kernel = Literal["rbf", "matern52"]
Acquisition = Literal["ei", "ucb"]

DEFAULT_KERNEL: Kernel = "rbf"
"""Continuous kernel of each outcome GP (`PlannerConfig.kernel`): BoTorch's default RBF."""
DEFAULT_ACQUISITION: Acquisition = "ei"
"""Single-objective acquisition (`PlannerConfig.acquisition`): log noisy expected improvement."""
DEFAULT_EXPLORATION_WEIGHT = 2.0
"""UCB's weight of the posterior standard deviation (`PlannerConfig.exploration_weight`)."""
DEFAULT_MIN_NOISE: float | None = None
"""Floor on the inferred noise variance (`PlannerConfig.min_noise`); ``None`` keeps BoTorch's ``1e-4``."""
MAX_EXPLORATION_WEIGHT = 100.0
"""Largest UCB exploration weight accepted (beyond it the mean no longer matters)."""


@dataclass(frozen=True)
class CostSpec:
    """How the cost of an experiment depends on its conditions.

    ``cost(x) = fixed + sum_p per_unit[p] * x[p] + sum_p per_choice[p][x[p]]`` (known in advance, e.g. anneal
    hours), or learned from a measured outcome ``outcome`` (e.g. ``"duration_h"``) by a GP on its logarithm.

    Args:
        fixed: Cost every experiment has (> 0 unless ``outcome`` or terms make every cost positive).
        per_unit: ``(parameter, cost per unit of it)`` pairs, continuous or integer parameters.
        per_choice: ``(parameter, ((choice, cost), ...))`` pairs for categorical parameters.
        outcome: Name of an observed positive outcome that records each experiment's cost.
        alpha: Exponent of the cost in the acquisition (``a(x) / cost(x)^alpha``).
    """

    fixed: float = 0.0
    per_unit: tuple[tuple[str, float], ...] = ()
    per_choice: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()
    outcome: str | None = None
    alpha: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_unit", tuple((str(n), float(c)) for n, c in self.per_unit))
        object.__setattr__(
            self,
            "per_choice",
            tuple((str(n), tuple((str(k), float(c)) for k, c in cs)) for n, cs in self.per_choice),
        )
        if self.outcome is None and self.fixed <= 0 and not self.per_unit and not self.per_choice:
            raise SpecError("cost: give a positive fixed cost, per-unit / per-choice terms, or an outcome")
        if not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise SpecError(f"cost: alpha must be > 0, got {self.alpha}")


@dataclass(frozen=True)
class PlanningProblem:
    """Everything a planner needs to know about the campaign's question, validated once.

    Args:
        parameters: What may vary.
        objectives: What is wanted (one, or several for a Pareto front).
        constraints: Bounds on measured outcomes.
        linear_constraints: Linear constraints on continuous parameters (e.g. fractions summing to one).
        candidates: A finite set of allowed conditions; proposals are picked from it.
        measurement: A choice of how to measure, traded against its cost.
        cost: How the cost of an experiment depends on its conditions.
        fractions: Outcomes that are fractions in ``[0, 1]`` (phase weight fractions), modelled on the logit
            scale (`agents.planner.fractions`); their bounds, targets and references must lie in ``[0.001, 0.999]``.
    """

    parameters: tuple[ParameterSpec, ...]
    objectives: tuple[ObjectiveSpec, ...]
    constraints: tuple[OutcomeConstraintSpec, ...] = ()
    linear_constraints: tuple[LinearConstraintSpec, ...] = ()
    candidates: tuple[Mapping[str, Condition], ...] | None = None
    measurement: MeasurementSpec | None = None
    cost: CostSpec | None = None
    fractions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for attr in ("parameters", "objectives", "constraints", "linear_constraints", "fractions"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        if self.candidates is not None:
            object.__setattr__(self, "candidates", tuple(self.candidates))
            if not self.candidates:
                raise SpecError("candidates: the finite candidate set is empty")
        if not self.objectives:
            raise SpecError("at least one objective is needed")
        names = [o.name for o in self.objectives]
        if len(set(names)) != len(names):
            raise SpecError(f"objective names must be unique, got {names}")
        pnames = {p.name for p in self.parameters}
        if self.measurement is not None and self.measurement.name in pnames:
            raise SpecError(f"measurement name {self.measurement.name!r} collides with a parameter")
        unknown = [name for name in self.fractions if name not in self.outcome_names]
        if unknown:
            raise SpecError(f"fractions {unknown} are neither objectives nor constrained outcomes")
        self.modelled_objectives(), self.modelled_constraints()  # bounds of fractions must have a logit
        if self.cost is not None:
            kinds = {p.name: p.kind for p in self.parameters}
            for n, _ in self.cost.per_unit:
                if kinds.get(n) not in ("continuous", "integer"):
                    raise SpecError(f"cost.per_unit names {n!r}, not a continuous or integer parameter")
            for n, _ in self.cost.per_choice:
                if kinds.get(n) != "categorical":
                    raise SpecError(f"cost.per_choice names {n!r}, not a categorical parameter")

    @property
    def outcome_names(self) -> tuple[str, ...]:
        """Modelled outcomes: objectives first, then constrained outcomes not already listed."""
        out = [o.name for o in self.objectives]
        out += [c.name for c in self.constraints if c.name not in out]
        return tuple(dict.fromkeys(out))

    def modelled_objectives(self) -> tuple[ObjectiveSpec, ...]:
        """The objectives on the scale their GPs model them: targets and references of fractions as logits."""
        out = []
        for o in self.objectives:
            if o.name in self.fractions:
                target = None if o.target is None else logit_of_bound(o.name, o.target, "target")
                reference = None if o.reference is None else logit_of_bound(o.name, o.reference, "reference")
                o = replace(o, target=target, reference=reference)
            out.append(o)
        return tuple(out)

    def modelled_constraints(self) -> tuple[OutcomeConstraintSpec, ...]:
        """The outcome constraints on the scale their GPs model them: bounds of fractions as logits."""
        return tuple(
            replace(c, value=logit_of_bound(c.name, c.value, "constraint bound")) if c.name in self.fractions else c
            for c in self.constraints
        )


@dataclass(frozen=True)
class PlannerConfig:
    """Settings of the BoTorch optimiser.

    Args:
        seed: Seeds the initial design and every model fit / acquisition optimisation (with the data count).
        n_initial: Number of space-filling proposals before the model takes over.
        raw_samples: Raw samples for the acquisition optimiser's initialisation heuristic.
        num_restarts: Restarts of the gradient-based acquisition optimiser.
        mc_samples: Quasi-MC samples of the acquisition function.
        mode: ``"optimize"`` (improve the objectives) or ``"explore"`` (reduce integrated posterior variance).
        allow_repeats: Allow proposing conditions that were already told (replicates).
        max_enumerate: Fully discrete spaces up to this many points are enumerated as a finite candidate set.
        candidate_batch: Candidates evaluated per batch when choosing from a finite set.
        min_feasibility: Floor on the model's probability that an experiment works (the classifier, once some
            failed; the acquisition is multiplied by a steep sigmoid in ``P - min_feasibility``,
            `acquisition.feasibility_floor`) and, separately, that it meets every outcome constraint (the
            constrained outcomes' GPs; a steep sigmoid in ``log P - log min_feasibility``,
            `acquisition.outcome_constraint_floor`). ``0`` turns both off.
        num_threads: torch intra-op threads while asking (restored afterwards); ``1`` is fastest for the small
            GPs of a lab campaign and avoids spin-waiting on a shared machine; ``None`` keeps torch's setting.
        winsorize: Clip the uninformative tail of each outcome before fitting (`agents.planner.winsorize`), as
            Ax does by default. Off by default until the planner bench has compared it on every problem.
        center_first: Start the initial design at the centre of the box (as Ax's default design does), then
            Sobol points. Off by default until the planner bench has compared it on every problem.
        bilog: Model each constrained outcome (not an objective) on the bilog scale around its bound
            (`agents.planner.bilog`), as Ax's ``BilogY`` does. Off by default until the planner bench has
            compared it on every constrained problem.
        local_search: Also start the acquisition optimiser around the best points so far
            (`agents.planner.optimize.initial_conditions`; continuous spaces without linear constraints). Off by
            default: on the planner bench it helped the TiO2 scenario and cost on Branin and Gardner's problem.
        min_noise: Floor on the inferred noise variance (standardised) of outcomes told without variances
            (`models.fit_outcome_model`); ``None`` keeps BoTorch's ``1e-4``, which limits how finely a noiseless
            outcome with a large range is resolved near its optimum. Opt-in until the whole planner bench has
            compared it.
        kernel: Continuous kernel of each outcome GP: ``"rbf"`` (BoTorch's default for ``SingleTaskGP``) or
            ``"matern52"`` (the classic ARD Matern-5/2 in a ``ScaleKernel`` with Gamma priors, rougher sample
            paths; `models.continuous_kernel`). With categorical parameters it is the kernel of the continuous
            columns of ``MixedSingleTaskGP``. The failure classifier and a learned cost model keep RBF.
        acquisition: Single-objective acquisition in ``"optimize"`` mode: ``"ei"`` (``qLogNoisyExpectedImprovement``)
            or ``"ucb"`` (``qUpperConfidenceBound``, ``mean + exploration_weight * std`` of the utility; outcome
            constraints and the failure classifier weight the utility samples, BoTorch's ``ConstrainedMCObjective``).
            Several objectives always use ``qLogNEHVI`` and ``"explore"`` mode ``qNIPV``; ``"ucb"`` with several
            objectives or a cost is refused by the planner.
        exploration_weight: UCB's weight ``w`` of the posterior standard deviation, in ``(0, 100]``.
    """

    seed: int = 0
    n_initial: int = 5
    raw_samples: int = 256
    num_restarts: int = 8
    mc_samples: int = 128
    mode: Literal["optimize", "explore"] = "optimize"
    allow_repeats: bool = False
    max_enumerate: int = 20_000
    candidate_batch: int = 2048
    num_threads: int | None = 1
    min_feasibility: float = 0.25
    winsorize: bool = False
    center_first: bool = False
    bilog: bool = False
    local_search: bool = False
    min_noise: float | None = DEFAULT_MIN_NOISE
    kernel: Kernel = DEFAULT_KERNEL
    acquisition: Acquisition = DEFAULT_ACQUISITION
    exploration_weight: float = DEFAULT_EXPLORATION_WEIGHT

    def __post_init__(self) -> None:
        if self.n_initial < 0:
            raise SpecError(f"n_initial must be >= 0, got {self.n_initial}")
        for attr in ("raw_samples", "num_restarts", "mc_samples", "max_enumerate", "candidate_batch"):
            if getattr(self, attr) < 1:
                raise SpecError(f"{attr} must be >= 1, got {getattr(self, attr)}")
        if self.num_threads is not None and self.num_threads < 1:
            raise SpecError(f"num_threads must be >= 1 or None, got {self.num_threads}")
        if self.min_noise is not None and not 0.0 < self.min_noise <= 1.0:
            raise SpecError(f"min_noise must be in (0, 1] or None, got {self.min_noise}")
        if not 0.0 <= self.min_feasibility < 1.0:
            raise SpecError(f"min_feasibility must be in [0, 1), got {self.min_feasibility}")
        if self.mode not in ("optimize", "explore"):
            raise SpecError(f"mode must be 'optimize' or 'explore', got {self.mode!r}")
        if self.kernel not in ("rbf", "matern52"):
            raise SpecError(f"kernel must be 'rbf' or 'matern52', got {self.kernel!r}")
        if self.acquisition not in ("ei", "ucb"):
            raise SpecError(f"acquisition must be 'ei' or 'ucb', got {self.acquisition!r}")
        w = self.exploration_weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0.0 < w <= MAX_EXPLORATION_WEIGHT:
            raise SpecError(f"exploration_weight must be a number in (0, {MAX_EXPLORATION_WEIGHT:g}], got {w!r}")


@dataclass(frozen=True)
class AskRequest:
    """One ``ask``: how many proposals, what is still running, what is fixed today.

    Args:
        n: Number of proposals (``q``), at least 1.
        pending: Conditions of experiments proposed but not yet told; never proposed again.
        fixed: Parameter name -> value every proposal must use (e.g. today's precursor batch).
    """

    n: int = 1
    pending: tuple[Mapping[str, Condition], ...] = ()
    fixed: Mapping[str, Condition] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise SpecError(f"ask: n must be a positive int, got {self.n!r}")
        object.__setattr__(self, "pending", tuple(dict(p) for p in self.pending))
        object.__setattr__(self, "fixed", dict(self.fixed or {}))

    @classmethod
    def of(
        cls, n: int, pending: Sequence[Mapping[str, Condition]], fixed: Mapping[str, Condition] | None
    ) -> AskRequest:
        return cls(n=n, pending=tuple(pending), fixed=dict(fixed or {}))
