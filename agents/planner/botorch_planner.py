"""The BoTorch planner: space-filling start, then GP surrogates and (log) noisy expected improvement (or UCB).

One ``ask`` runs, in order: encode told data and pending points (`space`), draw the initial design while
fewer than ``n_initial`` experiments exist (`design`), fit GPs (`models`), build the acquisition
(`acquisition`), optimise it over the continuous, mixed or finite space, decode, and attach the model's
predictions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from botorch.acquisition import AcquisitionFunction, qLogNoisyExpectedImprovement, qUpperConfidenceBound
from botorch.acquisition.active_learning import qNegIntegratedPosteriorVariance
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.objective import ConstrainedMCObjective, MCAcquisitionObjective, ScalarizedPosteriorTransform
from botorch.exceptions.warnings import BotorchWarning, NumericsWarning, OptimizationWarning
from botorch.models.model import Model
from botorch.sampling import SobolQMCNormalSampler
from botorch.utils.multi_objective.pareto import is_non_dominated
from linear_operator.utils.warnings import NumericalWarning
from torch import Tensor

from agents.planner import persistence
from agents.planner.acquisition import (
    FEASIBILITY,
    AdjustedLogAcquisition,
    OutcomeLayout,
    cost_adjustment,
    feasibility_floor,
    make_constraints,
    make_multi_objective,
    make_single_objective,
    outcome_constraint_floor,
    reference_point,
    utilities,
)
from agents.planner.bilog import bilog, bilog_variance, inverse_bilog, inverse_bilog_std
from agents.planner.cost import make_log_cost
from agents.planner.design import Design
from agents.planner.errors import ExhaustedError, ObservationError, SpecError
from agents.planner.fractions import (
    fraction_logit,
    fraction_logit_variance,
    inverse_fraction_logit,
    inverse_fraction_logit_std,
)
from agents.planner.models import OutcomeData, fit_feasibility_model, fit_outcome_model
from agents.planner.optimize import (
    available,
    enumerate_space,
    is_duplicate,
    limit_threads,
    optimize_point,
)
from agents.planner.problem import (
    DEFAULT_ACQUISITION,
    DEFAULT_EXPLORATION_WEIGHT,
    DEFAULT_KERNEL,
    DEFAULT_MIN_NOISE,
    AskRequest,
    CostSpec,
    PlannerConfig,
    PlanningProblem,
)
from agents.planner.space import DTYPE, SearchSpace
from agents.planner.types import (
    Condition,
    LinearConstraintSpec,
    MeasurementSpec,
    ObjectiveSpec,
    Observation,
    OutcomeConstraintSpec,
    ParameterSpec,
    Proposal,
)
from agents.planner.winsorize import winsorization_cutoffs

__all__ = ["BoTorchPlanner"]

_MAX_BASELINE = 48


@dataclass(frozen=True)
class _Training:
    """Encoded training data of one ``ask``: model inputs per output and the baseline of successful points."""

    layout: OutcomeLayout
    data: tuple[OutcomeData, ...]
    feasibility: OutcomeData | None  # success indicator of every encodable experiment, if any failed
    X_baseline: Tensor  # n_ok x d, successful observations
    Y_baseline: Tensor  # n_ok x m_obj+, outcome values in layout order, on the GPs' scales (nan where missing)
    scales: dict[str, float]


class BoTorchPlanner:
    """Bayesian-optimisation planner over a mixed, constrained search space (implements `Planner`).

    Args:
        parameters: What may vary.
        objectives: One objective (``qLogNEI``, or ``qUCB``) or several (``qLogNEHVI`` on a Pareto front).
        constraints: Bounds on measured outcomes, each modelled by its own GP output.
        seed: Seeds the Sobol design and, together with the number of told observations, every fit and
            acquisition optimisation, so the same data and seed give the same proposals.
        n_initial: Number of experiments (told + pending) drawn from the Sobol design before the model is
            used.
        raw_samples: Raw samples of the acquisition optimiser's initialisation.
        num_restarts: Restarts of the acquisition optimiser.
        linear_constraints: Linear constraints on continuous parameters (e.g. composition fractions sum to
            one).
        candidates: A finite set of conditions to choose from (up to ~1e5); no pick is repeated unless
            ``allow_repeats``.
        measurement: A choice of how to measure, chosen by information gain per unit cost.
        cost: Cost of an experiment; the acquisition becomes improvement per unit cost.
        winsorize: Clip each outcome's uninformative tail before fitting (see `PlannerConfig`).
        center_first: Start the initial design at the centre of the box (see `PlannerConfig`).
        bilog: Model constrained outcomes on the bilog scale around their bounds (see `PlannerConfig`).
        local_search: Also start the acquisition optimiser around the best points so far (see `PlannerConfig`).
        min_noise: Floor on the inferred noise of outcomes told without variances (see `PlannerConfig`).
        kernel: Continuous kernel of the outcome GPs, ``"rbf"`` or ``"matern52"`` (see `PlannerConfig`).
        acquisition: ``"ei"`` (``qLogNEI``) or ``"ucb"`` (``qUCB``) for one objective (see `PlannerConfig`).
        exploration_weight: UCB's weight of the posterior standard deviation (see `PlannerConfig`).
        fractions: Outcomes that are fractions in ``[0, 1]`` (phase weight fractions), modelled on the logit
            scale (`agents.planner.fractions`).
        mode: ``"optimize"`` or ``"explore"`` (``qNegIntegratedPosteriorVariance``: learn the response
            surface).
        allow_repeats: Allow proposing conditions already told.
        mc_samples: Quasi-MC samples for the acquisition functions.

    Example:
        >>> planner = BoTorchPlanner([ParameterSpec("T", 300.0, 900.0)], [ObjectiveSpec("yield")], seed=1)
        >>> (p,) = planner.ask()
        >>> planner.tell([Observation(p.conditions, {"yield": 0.4})])
    """

    name = "botorch"

    def __init__(
        self,
        parameters: Sequence[ParameterSpec],
        objectives: Sequence[ObjectiveSpec],
        constraints: Sequence[OutcomeConstraintSpec] = (),
        *,
        seed: int = 0,
        n_initial: int = 5,
        raw_samples: int = 256,
        num_restarts: int = 8,
        linear_constraints: Sequence[LinearConstraintSpec] = (),
        candidates: Sequence[Mapping[str, Condition]] | None = None,
        measurement: MeasurementSpec | None = None,
        cost: CostSpec | None = None,
        mode: str = "optimize",
        allow_repeats: bool = False,
        mc_samples: int = 128,
        winsorize: bool = False,
        center_first: bool = False,
        bilog: bool = False,
        local_search: bool = False,
        min_noise: float | None = DEFAULT_MIN_NOISE,
        kernel: str = DEFAULT_KERNEL,
        acquisition: str = DEFAULT_ACQUISITION,
        exploration_weight: float = DEFAULT_EXPLORATION_WEIGHT,
        fractions: Sequence[str] = (),
    ) -> None:
        problem = PlanningProblem(
            parameters=tuple(parameters),
            objectives=tuple(objectives),
            constraints=tuple(constraints),
            linear_constraints=tuple(linear_constraints),
            candidates=None if candidates is None else tuple(candidates),
            measurement=measurement,
            cost=cost,
            fractions=tuple(fractions),
        )
        config = PlannerConfig(
            seed=seed,
            n_initial=n_initial,
            raw_samples=raw_samples,
            num_restarts=num_restarts,
            mc_samples=mc_samples,
            mode=mode,  # type: ignore[arg-type]
            allow_repeats=allow_repeats,
            winsorize=winsorize,
            center_first=center_first,
            bilog=bilog,
            local_search=local_search,
            min_noise=min_noise,
            kernel=kernel,  # type: ignore[arg-type]
            acquisition=acquisition,  # type: ignore[arg-type]
            exploration_weight=exploration_weight,
        )
        self._setup(problem, config)

    @classmethod
    def from_problem(cls, problem: PlanningProblem, config: PlannerConfig | None = None) -> BoTorchPlanner:
        """Build a planner from validated request objects."""
        self = cls.__new__(cls)
        self._setup(problem, config or PlannerConfig())
        return self

    def _setup(self, problem: PlanningProblem, config: PlannerConfig) -> None:
        if config.acquisition == "ucb" and len(problem.objectives) > 1:
            raise SpecError("acquisition 'ucb' takes one objective; several use qLogNEHVI (acquisition 'ei')")
        if config.acquisition == "ucb" and problem.cost is not None:
            raise SpecError("acquisition 'ucb' cannot weigh a cost; use acquisition 'ei' (improvement per unit cost)")
        self.problem, self.config = problem, config
        # Objectives and constraints as the GPs see them (fraction bounds as logits); the acquisition uses these.
        self._objectives, self._constraints = problem.modelled_objectives(), problem.modelled_constraints()
        self.space = SearchSpace(problem.parameters, problem.linear_constraints)
        self.design = Design(self.space, config.seed, "sobol", center_first=config.center_first)
        self._observations: list[Observation] = []
        self.model: Model | None = None
        """The model fitted at the last ``ask`` (``None`` before the first fit); for inspection."""
        self._candidates: Tensor | None = None
        if problem.candidates is not None:
            C = self.space.encode_many(problem.candidates)
            if self.space.linear_constraints and not bool(self.space.satisfies_linear(C).all()):
                raise SpecError("some candidates violate the linear constraints")
            self._candidates = C
        elif self.space.n_combinations() <= config.max_enumerate:
            self._candidates = enumerate_space(self.space)

    # ------------------------------------------------------------------ protocol
    @property
    def observations(self) -> tuple[Observation, ...]:
        """Everything told so far, in order."""
        return tuple(self._observations)

    def tell(self, observations: Sequence[Observation]) -> None:
        """Add observations (successful or failed); conditions outside the current bounds are kept and used."""
        for o in observations:
            if not isinstance(o, Observation):
                raise ObservationError(f"tell expects Observation objects, got {type(o).__name__}")
            for k, v in o.outcomes.items():
                if not isinstance(v, int | float) or not math.isfinite(v):
                    raise ObservationError(f"outcome {k}={v!r} is not a finite number")
        self._observations.extend(observations)

    def ask(
        self,
        n: int = 1,
        pending: Sequence[Mapping[str, Condition]] = (),
        fixed: Mapping[str, Condition] | None = None,
    ) -> list[Proposal]:
        """Propose ``n`` experiments.

        Args:
            n: Number of proposals (a batch of ``q = n``, chosen sequentially-greedily).
            pending: Conditions of running experiments; treated as ``X_pending`` and never proposed again.
            fixed: Parameter values every proposal must use.

        Returns:
            ``n`` proposals, each with its strategy, acquisition value and model predictions.
        """
        return self.ask_request(AskRequest.of(n, pending, fixed))

    # ------------------------------------------------------------------ core
    def ask_request(self, request: AskRequest) -> list[Proposal]:
        """`ask` with a validated `AskRequest`."""
        with limit_threads(self.config.num_threads), warnings.catch_warnings():
            warnings.simplefilter("ignore", NumericalWarning)  # Cholesky jitter on near-duplicate points
            return self._ask(request)

    def _ask(self, request: AskRequest) -> list[Proposal]:
        space, cfg = self.space, self.config
        fixed = space.fixed_features(request.fixed)
        X_pending = space.encode_many(request.pending)
        encoded = self._encoded_observations()
        X_told = torch.stack([x for _, x in encoded]) if encoded else torch.empty(0, space.dim, dtype=DTYPE)
        avoid = X_pending if cfg.allow_repeats else torch.cat([X_pending, space.snap(X_told)])

        k = len(self._observations) + len(request.pending)
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed + len(self._observations))
            training = self._training(encoded)
            n_design = request.n if training is None else min(max(cfg.n_initial - k, 0), request.n)
            X_new, strategies = self._design(k, n_design, fixed, avoid)
            values: list[float | None] = [None] * n_design
            model = feas_model = None
            if training is not None:
                feas = training.feasibility
                feas_model = None if feas is None else fit_feasibility_model(feas.X, feas.Y)
                model = self.model = fit_outcome_model(
                    training.data, space.categorical_dims, feas_model, min_noise=cfg.min_noise, kernel=cfg.kernel
                )
            if n_design < request.n:
                assert training is not None and model is not None
                acqf, label = self._acquisition(model, training, torch.cat([X_pending, X_new]), encoded, feas_model)
                incumbents = self._incumbents(model, training) if cfg.local_search and cfg.mode == "optimize" else None
                X_bo, v_bo = self._optimize(acqf, request.n - n_design, fixed, torch.cat([avoid, X_new]), incumbents)
                X_new = torch.cat([X_new, X_bo])
                strategies += [label if v is not None else self.design.strategy + "-fallback" for v in v_bo]
                values += v_bo
            proposals = self._proposals(X_new, strategies, values, model, training)
        return proposals

    def _encoded_observations(self) -> list[tuple[Observation, Tensor]]:
        out = []
        for o in self._observations:
            try:
                out.append((o, self.space.encode(o.conditions)))
            except ObservationError:
                continue  # e.g. a categorical choice removed from the space: kept in state, not modelled
        return out

    def _training(self, encoded: list[tuple[Observation, Tensor]]) -> _Training | None:
        """Build per-output training data, or ``None`` while an objective has fewer than two observations."""
        problem = self.problem
        ok = [(o, x) for o, x in encoded if not o.failed]
        names = list(problem.outcome_names)
        n_failed = sum(o.failed for o, _ in encoded)
        if n_failed and ok:
            names.append(FEASIBILITY)
        layout = OutcomeLayout(tuple(names))
        data, scales = [], {}
        feasibility = None
        for name in layout.names:
            if name == FEASIBILITY:
                X = torch.stack([x for _, x in encoded])
                Y = torch.tensor([[0.0 if o.failed else 1.0] for o, _ in encoded], dtype=DTYPE)
                feasibility = OutcomeData(name, X, Y)
                continue
            rows = [(o, x) for o, x in ok if name in o.outcomes]
            if len(rows) < 2:
                return None
            Y = torch.tensor([[float(o.outcomes[name])] for o, _ in rows], dtype=DTYPE)
            if self.config.winsorize:
                Y = Y.clamp(*winsorization_cutoffs(name, Y, problem.objectives, problem.constraints))
            yvar = [self._variance(o, name) for o, _ in rows]
            Yvar = None if any(v is None for v in yvar) else torch.tensor([[v] for v in yvar], dtype=DTYPE)
            Y, Yvar = self._to_model_scale(name, Y, Yvar)
            data.append(OutcomeData(name, torch.stack([x for _, x in rows]), Y, Yvar))
            scales[name] = float(Y.std()) if len(rows) > 1 and float(Y.std()) > 0 else 1.0
        X_base = torch.stack([x for _, x in ok])
        Y_base = torch.full((len(ok), layout.m), math.nan, dtype=DTYPE)
        for i, (o, _) in enumerate(ok):
            for j, name in enumerate(layout.names):
                if name == FEASIBILITY:
                    Y_base[i, j] = 1.0
                elif name in o.outcomes:
                    Y_base[i, j] = float(o.outcomes[name])
        for j, name in enumerate(layout.names):
            if name != FEASIBILITY:
                Y_base[:, j] = self._to_model_scale(name, Y_base[:, j], None)[0]  # nan stays nan
        return _Training(layout, tuple(data), feasibility, X_base, Y_base, scales)

    def _to_model_scale(self, name: str, Y: Tensor, Yvar: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Observed values of outcome ``name`` (and their variances) on the scale its GP models: logits for a
        fraction, bilog around the bound for a constrained outcome (`PlannerConfig.bilog`), else as observed."""
        if name in self.problem.fractions:
            return fraction_logit(Y), None if Yvar is None else fraction_logit_variance(Y, Yvar)
        bound = self._bilog_bound(name)
        if bound is not None:
            return bilog(Y, bound), None if Yvar is None else bilog_variance(Y, Yvar, bound)
        return Y, Yvar

    def _to_outcome_units(self, name: str, mean: float, std: float) -> tuple[float, float]:
        """A posterior mean and standard deviation of outcome ``name`` carried back from its GP's scale to the
        outcome's own units (the inverse of `_to_model_scale`; delta rule for the standard deviation)."""
        z, s = torch.tensor(mean, dtype=DTYPE), torch.tensor(std, dtype=DTYPE)
        if name in self.problem.fractions:
            return float(inverse_fraction_logit(z)), float(inverse_fraction_logit_std(z, s))
        bound = self._bilog_bound(name)
        if bound is not None:
            return float(inverse_bilog(z, bound)), float(inverse_bilog_std(z, s, bound))
        return mean, std

    def _bilog_bound(self, name: str) -> float | None:
        """The bound around which outcome ``name`` is modelled on the bilog scale (`PlannerConfig.bilog`), if any:
        outcomes that are constrained and not objectives, at their first constraint's bound."""
        if not self.config.bilog or name in {o.name for o in self.problem.objectives} or name in self.problem.fractions:
            return None
        return next((c.value for c in self.problem.constraints if c.name == name), None)

    def _variance(self, o: Observation, name: str) -> float | None:
        """The noise variance of outcome ``name`` in ``o``: as reported, else that of its measurement level."""
        if o.variances and name in o.variances:
            return float(o.variances[name])
        m = self.problem.measurement
        if m is not None and o.conditions.get(m.name) in m.levels:
            return self._level_noise(name)[m.levels.index(o.conditions[m.name])]  # type: ignore[arg-type]
        return None

    def _level_noise(self, name: str) -> list[float]:
        """Noise variance of ``name`` per measurement level: the median reported one at that level.

        A level with no report yet gets an observed level's median scaled by the ratio of their priors (for
        counting statistics, variance ~ 1 / counting time), the geometric mean over the observed levels; with
        no report at any level, the priors themselves.
        """
        m = self.problem.measurement
        assert m is not None
        seen: list[float | None] = []
        for level in m.levels:
            reported = [
                o.variances[name]
                for o in self._observations
                if o.variances and name in o.variances and o.conditions.get(m.name) == level
            ]
            seen.append(float(torch.tensor(reported, dtype=DTYPE).median()) if reported else None)
        observed = [(v, prior) for v, prior in zip(seen, m.noise_variances, strict=True) if v is not None]
        if not observed:
            return [float(prior) for prior in m.noise_variances]
        log_scale = sum(math.log(v / prior) for v, prior in observed) / len(observed)
        return [
            v if v is not None else float(prior) * math.exp(log_scale)
            for v, prior in zip(seen, m.noise_variances, strict=True)
        ]

    # ------------------------------------------------------------------ design
    def _design(self, k: int, n: int, fixed: dict[int, float], avoid: Tensor) -> tuple[Tensor, list[str]]:
        """Draw ``n`` design points from index ``k`` on, skipping any that repeat ``avoid`` (``r x d``)."""
        if n == 0:
            return torch.empty(0, self.space.dim, dtype=DTYPE), []
        chosen: list[Tensor] = []
        taken = avoid
        index = k
        while len(chosen) < n:
            if index - k > 64 * n + 1024:
                raise ExhaustedError("no unused point is left in the design for this space / fixed values")
            u = self.design.points(index, 1, fixed)[0]
            index += 1
            x = self._nearest_candidate(u, fixed, taken) if self._candidates is not None else u
            if x is None:
                raise ExhaustedError("every candidate has been told or is pending")
            if not is_duplicate(x, taken):
                chosen.append(x)
                taken = torch.cat([taken, x.unsqueeze(0)])
        return torch.stack(chosen), [self.design.strategy] * n

    def _available(self, fixed: dict[int, float], taken: Tensor) -> Tensor:
        """Indices of candidates matching ``fixed`` and, unless repeats are allowed, not in ``taken``."""
        assert self._candidates is not None
        return available(self._candidates, fixed, taken, self.config.allow_repeats)

    def _nearest_candidate(self, u: Tensor, fixed: dict[int, float], taken: Tensor) -> Tensor | None:
        idx = self._available(fixed, taken)
        if idx.numel() == 0:
            return None
        C = self._candidates[idx]  # type: ignore[index]
        return C[(C - u).square().sum(-1).argmin()].clone()

    # ------------------------------------------------------------------ acquisition
    def _acquisition(
        self,
        model: Model,
        training: _Training,
        X_pending: Tensor,
        encoded: list[tuple[Observation, Tensor]],
        feasibility: Model | None = None,
    ) -> tuple[AcquisitionFunction, str]:
        problem, cfg = self.problem, self.config
        layout = training.layout
        X_pending_arg = X_pending if X_pending.shape[0] else None
        sampler = SobolQMCNormalSampler(torch.Size([cfg.mc_samples]), seed=cfg.seed + len(self._observations))
        if cfg.mode == "explore":
            weights = torch.zeros(layout.m, dtype=DTYPE)
            for o in problem.objectives:
                weights[layout.index(o.name)] = 1.0 / training.scales[o.name] ** 2
            mc_points = self.design.points(1_000_000, 256)
            acqf = qNegIntegratedPosteriorVariance(
                model,
                mc_points=mc_points,
                X_pending=X_pending_arg,
                posterior_transform=ScalarizedPosteriorTransform(weights),
            )
            return acqf, "qNIPV"
        constraints = make_constraints(self._constraints, layout, training.scales) or None
        if cfg.acquisition == "ucb":
            return self._ucb(model, training, X_pending_arg, sampler, constraints), "qUCB"
        X_baseline = self._baseline(model, training)
        if len(self._objectives) == 1:
            acqf: AcquisitionFunction = qLogNoisyExpectedImprovement(
                model,
                X_baseline=X_baseline,
                sampler=sampler,
                objective=make_single_objective(self._objectives[0], layout),
                constraints=constraints,
                X_pending=X_pending_arg,
                prune_baseline=True,
                cache_root=True,
            )
            label = "qLogNEI"
        else:
            acqf = qLogNoisyExpectedHypervolumeImprovement(
                model,
                ref_point=self._reference_point(training),
                X_baseline=X_baseline,
                sampler=sampler,
                objective=make_multi_objective(self._objectives, layout),
                constraints=constraints,
                X_pending=X_pending_arg,
                prune_baseline=True,
                cache_root=True,
            )
            label = "qLogNEHVI"
        if problem.cost is not None:
            log_cost = make_log_cost(problem.cost, self.space, encoded)
            if log_cost is not None:
                acqf = AdjustedLogAcquisition(acqf, cost_adjustment(log_cost, problem.cost.alpha))
                label += "/cost"
        if feasibility is not None and cfg.min_feasibility > 0:
            acqf = AdjustedLogAcquisition(acqf, feasibility_floor(feasibility, cfg.min_feasibility))
        if self._constraints and cfg.min_feasibility > 0:
            floor = outcome_constraint_floor(model, self._constraints, layout, cfg.min_feasibility)
            acqf = AdjustedLogAcquisition(acqf, floor)
        return acqf, label

    def _ucb(
        self,
        model: Model,
        training: _Training,
        X_pending: Tensor | None,
        sampler: SobolQMCNormalSampler,
        constraints: list[Callable[[Tensor], Tensor]] | None,
    ) -> AcquisitionFunction:
        """``qUpperConfidenceBound`` of the objective's utility: ``mean + w * std`` for one point (``beta = w^2``,
        as BoTorch's qUCB averages ``sqrt(beta pi / 2) |u - mean|``, and ``E|u - mean| = std sqrt(2 / pi)``).

        Outcome constraints and the failure classifier weight each utility sample by the product of their
        sigmoids (BoTorch's ``ConstrainedMCObjective``): ``(u + M) * prod_c sigmoid(-c / eta) - M``, so a sample
        that misses a constraint counts as ``-M``, the lowest utility the model finds plausible at the told points
        (`_infeasible_cost`). UCB is then optimistic about the constraints too: the spread between feasible and
        infeasible samples adds to the bound, so points whose feasibility is uncertain (at the edge of the feasible
        region) are favoured, and the acquisition value exceeds ``mean + w * std`` there. The log-scale floors of EI
        (`feasibility_floor`, `outcome_constraint_floor`) do not apply to a UCB value, which can be negative.
        """
        objective: MCAcquisitionObjective = make_single_objective(self._objectives[0], training.layout)
        if constraints:
            cost = _infeasible_cost(model, training.X_baseline, objective)
            objective = ConstrainedMCObjective(objective, constraints, infeasible_cost=cost)
        beta = self.config.exploration_weight**2
        return qUpperConfidenceBound(model, beta=beta, sampler=sampler, objective=objective, X_pending=X_pending)

    def _baseline(self, model: Model, training: _Training) -> Tensor:
        """The points NEI / NEHVI integrate over as candidates for the incumbent, an ``r x d`` tensor.

        With many observations, BoTorch's Monte-Carlo pruning (2048 joint posterior samples at every told
        point) dominates the cost of an ``ask``. Beforehand we keep the points that are best by posterior mean:
        feasible ones first (mean constraints met), then the 48 of highest utility (one objective), or whole
        non-dominated layers of the mean utilities until at least 48 are kept (several objectives; the first
        layer is always kept entire).
        """
        X = training.X_baseline
        if X.shape[0] <= _MAX_BASELINE:
            return X
        return X[self._best_by_mean(model, training, _MAX_BASELINE)]

    def _incumbents(self, model: Model, training: _Training) -> Tensor:
        """The best told points by posterior mean (feasible first), which the acquisition optimiser also
        searches around (`initial_conditions`): the best 3 for one objective, the mean Pareto set for several."""
        return training.X_baseline[self._best_by_mean(model, training, 3 if len(self._objectives) == 1 else 1)]

    def _best_by_mean(self, model: Model, training: _Training, n: int) -> list[int]:
        """Indices into ``training.X_baseline`` of the best ``n`` points by posterior mean: the least constraint
        violation first (mean constraints and predicted success), then the highest utility (one objective), or
        whole non-dominated layers of the mean utilities until at least ``n`` are kept (several objectives)."""
        X = training.X_baseline
        layout, objectives = training.layout, self._objectives
        with torch.no_grad():
            mean = model.posterior(X).mean
        violation = torch.zeros(X.shape[0], dtype=DTYPE)
        for c in self._constraints:
            y = mean[:, layout.index(c.name)]
            violation += ((y - c.value) if c.op == "<=" else (c.value - y)).clamp_min(0) / training.scales[c.name]
        if FEASIBILITY in layout.names:
            violation += (-mean[:, layout.index(FEASIBILITY)]).clamp_min(0)
        U = utilities(mean, objectives, layout)
        if len(objectives) == 1:
            order = sorted(range(X.shape[0]), key=lambda i: (float(violation[i]), -float(U[i, 0])))
            return order[:n]
        # Several objectives: never drop a point of the first (mean) Pareto layer -- a front point missing
        # from the baseline would make NEHVI re-propose where the front is already known.
        keep: list[int] = []
        everyone = torch.arange(X.shape[0])
        for group in (everyone[violation == 0], everyone[violation > 0]):
            while group.numel() and len(keep) < n:
                front = is_non_dominated(U[group])
                keep += group[front].tolist()
                group = group[~front]
        return keep

    def _reference_point(self, training: _Training) -> Tensor:
        """Reference point in utility space from the feasible observed points (see `reference_point`)."""
        Y = training.Y_baseline
        ok = ~Y[:, : len(self._objectives)].isnan().any(-1)
        for c in self._constraints:
            y = Y[:, training.layout.index(c.name)]
            ok &= (y <= c.value) if c.op == "<=" else (y >= c.value)
        U = utilities(Y[ok], self._objectives, training.layout)
        return reference_point(self._objectives, U)

    # ------------------------------------------------------------------ optimisation
    def _optimize(
        self,
        acqf: AcquisitionFunction,
        q: int,
        fixed: dict[int, float],
        avoid: Tensor,
        incumbents: Tensor | None = None,
    ) -> tuple[Tensor, list[float | None]]:
        """Choose ``q`` points sequentially (greedy), each conditioned on the previous as pending; the optimiser
        also starts around the ``incumbents``.

        Returns:
            A ``q x d`` tensor and the acquisition value of each point (``None`` for a design fallback used
            when the optimiser could only return repeats).
        """
        base_pending = acqf.X_pending
        chosen: list[Tensor] = []
        values: list[float | None] = []
        taken = avoid
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizationWarning)
            warnings.simplefilter("ignore", NumericsWarning)
            warnings.simplefilter("ignore", BotorchWarning)
            warnings.filterwarnings("ignore", message="Optimization failed", category=RuntimeWarning)
            for _ in range(q):
                if chosen:
                    extra = torch.stack(chosen)
                    acqf.set_X_pending(extra if base_pending is None else torch.cat([base_pending, extra]))
                x, v = optimize_point(acqf, self.space, self.config, fixed, taken, self._candidates, incumbents)
                if x is None:
                    x = self._design(10_000 + len(self._observations) + len(chosen), 1, fixed, taken)[0][0]
                chosen.append(x)
                values.append(v)
                taken = torch.cat([taken, x.unsqueeze(0)])
        acqf.set_X_pending(base_pending)
        return torch.stack(chosen), values

    # ------------------------------------------------------------------ output
    def _proposals(
        self,
        X: Tensor,
        strategies: list[str],
        values: list[float | None],
        model: Model | None,
        training: _Training | None,
    ) -> list[Proposal]:
        predicted: list[dict[str, tuple[float, float]]] = [{} for _ in range(X.shape[0])]
        if model is not None and training is not None:
            with torch.no_grad():
                post = model.posterior(X)
                mean, var = post.mean, post.variance.clamp_min(0)
            for i in range(X.shape[0]):
                predicted[i] = {
                    name: (float(mean[i, j]), float(var[i, j].sqrt())) for j, name in enumerate(training.layout.names)
                }
                for name, (mu, sd) in list(predicted[i].items()):
                    if name != FEASIBILITY:
                        predicted[i][name] = self._to_outcome_units(name, mu, sd)
                if FEASIBILITY in predicted[i]:  # probit: P(success) = Phi(mu / sqrt(1 + sigma^2))
                    mu, sd = predicted[i][FEASIBILITY]
                    p = 0.5 * math.erfc(-mu / math.sqrt(2 * (1 + sd**2)))
                    predicted[i][FEASIBILITY] = (p, sd)
        out = []
        for i in range(X.shape[0]):
            conditions = self._given_candidate(X[i]) or self.space.decode(X[i])
            if self.problem.measurement is not None:
                conditions[self.problem.measurement.name] = self._measurement_level(predicted[i])
            out.append(Proposal(conditions, strategies[i], values[i], predicted[i]))
        return out

    def _given_candidate(self, x: Tensor) -> dict[str, Condition] | None:
        """The user's own candidate mapping at encoded point ``x`` (exact values, no decoding round-off), if any."""
        if self.problem.candidates is None or self._candidates is None:
            return None
        distance = ((self._candidates - x) ** 2).sum(-1)
        k = int(distance.argmin())
        if float(distance[k]) > 1e-18:
            return None
        names = {p.name for p in self.problem.parameters}
        return {name: value for name, value in self.problem.candidates[k].items() if name in names}

    def _measurement_level(self, predicted: Mapping[str, tuple[float, float]]) -> str:
        """The level with the largest information gain per cost, ``sum_j 0.5 log(1 + s_j^2 / noise_j) /
        cost``, ``s_j`` the predicted standard deviation of objective ``j`` in its own units.

        Before a model exists (nothing ``predicted``) the cheapest level is chosen.
        """
        m = self.problem.measurement
        assert m is not None
        if not predicted:
            return m.levels[min(range(len(m.levels)), key=lambda i: m.costs[i])]
        gain = [0.0] * len(m.levels)
        for o in self.problem.objectives:
            s2 = predicted[o.name][1] ** 2
            for i, noise in enumerate(self._level_noise(o.name)):
                gain[i] += 0.5 * math.log1p(s2 / noise)
        return m.levels[max(range(len(m.levels)), key=lambda i: gain[i] / m.costs[i])]

    # ------------------------------------------------------------------ persistence, space changes
    def state_dict(self) -> dict[str, Any]:
        """A JSON-serialisable state: problem, config and observations. The model is refitted from it."""
        return persistence.dump_state("botorch", self.problem, self.config, self._observations)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> BoTorchPlanner:
        """Rebuild a planner from `state_dict`; its next ``ask`` equals the original's."""
        kind, problem, config, observations = persistence.load_state(state)
        if kind != "botorch":
            raise SpecError(f"state is for a {kind!r} planner, not 'botorch'")
        planner = cls.from_problem(problem, config)
        planner.tell(observations)
        return planner

    def with_space(
        self,
        parameters: Sequence[ParameterSpec],
        linear_constraints: Sequence[LinearConstraintSpec] | None = None,
    ) -> BoTorchPlanner:
        """A planner over widened or narrowed bounds that keeps every observation (all are still modelled).

        Observations that no longer encode (a removed categorical choice or parameter) are kept in the state
        but left out of the model.
        """
        problem = replace(
            self.problem,
            parameters=tuple(parameters),
            linear_constraints=self.problem.linear_constraints
            if linear_constraints is None
            else tuple(linear_constraints),
        )
        planner = type(self).from_problem(problem, self.config)
        planner.tell(self._observations)
        return planner


def _infeasible_cost(model: Model, X: Tensor, objective: MCAcquisitionObjective) -> float:
    """``M`` such that ``-M`` is below the utility almost everywhere the model was told: minus the least utility of
    the posterior mean +- 6 standard deviations at ``X`` (``n x d``), as BoTorch's ``get_infeasible_cost`` but not
    clamped at zero, so that shifting every utility by a constant shifts ``-M`` with it."""
    with torch.no_grad():
        post = model.posterior(X)
        six = 6 * post.variance.clamp_min(0).sqrt()
        low = torch.minimum(objective(post.mean - six), objective(post.mean + six))
    return -float(low.min())
