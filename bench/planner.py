"""Benchmark of the planners: Crucible's BoTorch planner against random, Sobol and Optuna's TPE, side by side.

Figures, printed as they are measured:

- simple regret (median [25 %, 75 %] over seeds) after 10, 20, 40 and 80 experiments on each problem; for the
  two-objective problem the regret is ``max_hv - hv`` of the observed Pareto front;
- the number of experiments each method needs to get within 1 % of the optimum (regret <= 0.01 |f*|, or
  hypervolume >= 0.99 max_hv), median over seeds, and how many seeds got there within the budget;
- the ratio of every method's median to Crucible's (above 1 means Crucible needed fewer experiments);
- the latency of one proposal (q = 1 and q = 4) at 20, 100 and 300 observations in 6 dimensions, single and
two
  objectives, next to Optuna's TPE.

Problems: Branin (2-D), Hartmann-6, Gardner's constrained problem (2-D, one outcome constraint), Branin-Currin
(two objectives), a finite candidate set (Hartmann-6 restricted to ``--candidates`` random points), and two
``sim_lab`` campaign scenarios scored against their ground truth (`scenario_problem`):

- ``tio2``: ``tio2_calcination``, maximise the anatase crystallite size with rutile at most 10 wt% (3-D); Crucible
  is told that the rutile fraction is a weight fraction, as a campaign file's phase fractions are
  (`PlanningProblem.fractions`, the logit scale);
- ``catalyst``: ``ceria_zirconia_catalyst``, maximise the NiO surface area, the objective the scenario was built
  for (4-D, two of them irrelevant to it: loading against sintering, optimum on the temperature bound);
- ``catalyst-pd`` (not in the default set): the same with at least 1 wt% metallic Pd, which needs calcination
  above the PdO decomposition and so pits the constraint against sintering.

A scenario's planner sees what an analysis agent would report: the true quantity plus Gaussian noise as large as
the whole-pattern fit's errors in ``bench/analysis.py`` (size MAE 1.6 %, fraction MAE 0.0024, so standard deviations
of 2 % of a size or area and 0.003 of a weight fraction), with that variance attached.
Methods are scored on the ground truth at the conditions they ran (true value, true feasibility).

Run: ``.venv/bin/python bench/planner.py [--seeds 10] [--budget 80] [--problems branin,hartmann6]
[--methods crucible,random,sobol,tpe] [--workers 2] [--skip-latency] [--latency-only] [--quick] [--out
bench/out/planner.json]``. With ``--workers N`` the runs (problem, method, seed) are spread over N processes of
one thread each; the tables are the same.

Ax (``--methods ax``, ``--latency-methods tpe,ax``) is not a Crucible dependency; it runs from a separate
environment, so the test environment keeps its pinned set: ``make bench-planner-ax`` builds ``.venv-ax`` (torch
2.13.0, Crucible with ``constraints.txt``, ax-platform 1.3.1) and runs every method side by side. ``--log`` keeps
each finished run, so a stopped bench can still be reported with ``--report LOG``.

Diagnostics: ``--methods 'crucible[mc_samples=512;center_first=True]'`` runs Crucible's planner with any
`PlannerConfig` settings (``;``-separated Python literals), and ``crucible-snapped`` treats a finite set as Ax and
TPE are treated (optimise over the box, run the nearest unused candidate).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_ROOT = str(Path(__file__).resolve().parents[1])
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from botorch.test_functions import Hartmann  # noqa: E402
from botorch.test_functions.multi_objective import BraninCurrin  # noqa: E402
from botorch.utils.multi_objective.hypervolume import Hypervolume  # noqa: E402
from botorch.utils.multi_objective.pareto import is_non_dominated  # noqa: E402

from agents.planner import (  # noqa: E402
    BoTorchPlanner,
    ObjectiveSpec,
    Observation,
    OutcomeConstraintSpec,
    ParameterSpec,
    RandomPlanner,
    SobolPlanner,
)

CHECKPOINTS = (10, 20, 40, 80)


# --- problems ---
@dataclass
class BenchProblem:
    """A benchmark problem with a known optimum.

    ``evaluate`` maps conditions to outcomes (original units). ``score`` maps the observations so far to a
    number
    to maximise (``-best feasible f`` for minimisation, the dominated hypervolume for several objectives);
    ``optimum`` is its best achievable value, ``tolerance`` the regret that counts as "within 1 %", and
    ``worst``
    the regret charged while nothing feasible has been seen.
    """

    name: str
    parameters: list[ParameterSpec]
    objectives: list[ObjectiveSpec]
    evaluate: Callable[[dict[str, Any]], dict[str, float]]
    score: Callable[[list[Observation]], float]
    optimum: float
    tolerance: float
    worst: float
    constraints: list[OutcomeConstraintSpec] = field(default_factory=list)
    candidates: list[dict[str, Any]] | None = None
    measure: Callable[[dict[str, float], np.random.Generator], tuple[dict[str, float], dict[str, float]]] | None = None
    """Maps true outcomes to what the planner is told: (noisy outcomes, their variances). None: told exactly."""
    fractions: tuple[str, ...] = ()
    """Outcomes that are weight fractions in [0, 1], as a campaign file's phase fractions are declared to
    Crucible's planner (`PlanningProblem.fractions`); the other methods are not told."""


def observe(
    problem: BenchProblem, conditions: dict[str, Any], rng: np.random.Generator
) -> tuple[Observation, Observation]:
    """Run one experiment: (what the method is told, the ground truth it is scored on)."""
    truth = problem.evaluate(conditions)
    if problem.measure is None:
        return Observation(conditions, truth), Observation(conditions, truth)
    measured, variances = problem.measure(truth, rng)
    return Observation(conditions, measured, variances), Observation(conditions, truth)


def _min_score(objective: str, constraints: Sequence[OutcomeConstraintSpec] = ()) -> Callable:
    def score(obs: list[Observation]) -> float:
        vals = [
            -o.outcomes[objective]
            for o in obs
            if not o.failed and all(c.violation(o.outcomes[c.name]) == 0.0 for c in constraints)
        ]
        return max(vals) if vals else -math.inf

    return score


def branin_problem() -> BenchProblem:
    def f(c: dict[str, Any]) -> dict[str, float]:
        x1, x2 = c["x1"], c["x2"]
        y = (x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2
        return {"y": y + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10}

    fstar = 0.397887
    return BenchProblem(
        "branin",
        [ParameterSpec("x1", -5.0, 10.0), ParameterSpec("x2", 0.0, 15.0)],
        [ObjectiveSpec("y", "minimize")],
        f,
        _min_score("y"),
        -fstar,
        0.01 * fstar,
        300.0,
    )


_H6 = Hartmann(dim=6)


def _h6(c: dict[str, Any]) -> float:
    x = torch.tensor([[c[f"x{i}"] for i in range(6)]], dtype=torch.double)
    return float(_H6(x))


def hartmann6_problem() -> BenchProblem:
    fstar = -3.32237
    return BenchProblem(
        "hartmann6",
        [ParameterSpec(f"x{i}", 0.0, 1.0) for i in range(6)],
        [ObjectiveSpec("y", "minimize")],
        lambda c: {"y": _h6(c)},
        _min_score("y"),
        -fstar,
        0.01 * abs(fstar),
        abs(fstar),
    )


def gardner_problem() -> BenchProblem:
    """Gardner et al. (2014): minimise cos(2 x1) cos(x2) + sin(x1) s.t. cos(x1) cos(x2) - sin(x1) sin(x2) <=
    0.5."""

    def f(c: dict[str, Any]) -> dict[str, float]:
        x1, x2 = c["x1"], c["x2"]
        return {
            "y": math.cos(2 * x1) * math.cos(x2) + math.sin(x1),
            "c": math.cos(x1) * math.cos(x2) - math.sin(x1) * math.sin(x2),
        }

    constraints = [OutcomeConstraintSpec("c", "<=", 0.5)]
    fstar = _grid_optimum(f, [(0.0, 6.0), (0.0, 6.0)], "y", constraints)
    return BenchProblem(
        "gardner-constrained",
        [ParameterSpec("x1", 0.0, 6.0), ParameterSpec("x2", 0.0, 6.0)],
        [ObjectiveSpec("y", "minimize")],
        f,
        _min_score("y", constraints),
        -fstar,
        0.01 * abs(fstar),
        4.0,
        constraints,
    )


def _grid_optimum(f: Callable, bounds: list[tuple[float, float]], name: str, constraints) -> float:
    """Minimum of ``f[name]`` subject to ``constraints`` on a fine grid, polished by Nelder-Mead with a
    penalty."""
    from scipy.optimize import minimize

    g = np.linspace(0, 1, 801)
    best, arg = math.inf, None
    for u in g:
        for v in g:
            c = {
                "x1": bounds[0][0] + u * (bounds[0][1] - bounds[0][0]),
                "x2": bounds[1][0] + v * (bounds[1][1] - bounds[1][0]),
            }
            out = f(c)
            if all(k.violation(out[k.name]) == 0 for k in constraints) and out[name] < best:
                best, arg = out[name], c

    def pen(z: np.ndarray) -> float:
        out = f({"x1": z[0], "x2": z[1]})
        return out[name] + 1e4 * sum(k.violation(out[k.name]) for k in constraints)

    res = minimize(pen, [arg["x1"], arg["x2"]], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12})
    return min(best, float(res.fun)) if res.success else best


def branin_currin_problem() -> BenchProblem:
    bc = BraninCurrin()  # minimisation; ref point (18, 6)
    ref = bc.ref_point.clone()
    hv = Hypervolume(-ref)

    def f(c: dict[str, Any]) -> dict[str, float]:
        y = bc(torch.tensor([[c["x1"], c["x2"]]], dtype=torch.double))[0]
        return {"f1": float(y[0]), "f2": float(y[1])}

    def score(obs: list[Observation]) -> float:
        Y = torch.tensor([[-o.outcomes["f1"], -o.outcomes["f2"]] for o in obs if not o.failed], dtype=torch.double)
        if Y.shape[0] == 0:
            return 0.0
        Y = Y[(Y > -ref).all(-1)]
        return float(hv.compute(Y[is_non_dominated(Y)])) if Y.shape[0] else 0.0

    return BenchProblem(
        "branin-currin-2obj",
        [ParameterSpec("x1", 0.0, 1.0), ParameterSpec("x2", 0.0, 1.0)],
        [
            ObjectiveSpec("f1", "minimize", reference=float(ref[0])),
            ObjectiveSpec("f2", "minimize", reference=float(ref[1])),
        ],
        f,
        score,
        float(bc.max_hv),
        0.01 * float(bc.max_hv),
        float(bc.max_hv),
    )


def finite_problem(n_candidates: int) -> BenchProblem:
    g = torch.Generator().manual_seed(12345)
    X = torch.rand(n_candidates, 6, generator=g, dtype=torch.double)
    values = _H6(X)
    candidates = [{f"x{i}": float(v) for i, v in enumerate(row)} for row in X.tolist()]
    fstar = float(values.min())
    return BenchProblem(
        f"finite-hartmann6-{n_candidates}",
        [ParameterSpec(f"x{i}", 0.0, 1.0) for i in range(6)],
        [ObjectiveSpec("y", "minimize")],
        lambda c: {"y": _h6(c)},
        _min_score("y"),
        -fstar,
        0.01 * abs(fstar),
        abs(fstar),
        candidates=candidates,
    )


def scenario_problem(
    key: str,
    scenario_name: str,
    objective: str,
    constraint: tuple[str, str, float] | None,
    relative_noise: dict[str, float],
    absolute_noise: dict[str, float],
    fractions: tuple[str, ...] = (),
) -> BenchProblem:
    """A sim_lab scenario as a bench problem: maximise ``objective``, subject to one outcome ``constraint`` if given.

    The optimum is `sim_lab.scoring.true_optimum` (differential evolution and SLSQP on the ground truth); the
    1 % tolerance is 1 % of that optimum.
    """
    from sim_lab.scenarios import SCENARIOS
    from sim_lab.scoring import true_optimum

    scenario = SCENARIOS[scenario_name]()
    optimum = true_optimum(scenario, objective, "maximize", [constraint] if constraint else [])
    constraints = [OutcomeConstraintSpec(*constraint)] if constraint else []  # type: ignore[arg-type]
    outcomes = [objective, *(c.name for c in constraints)]

    def evaluate(c: dict[str, Any]) -> dict[str, float]:
        quantities = scenario.quantities(c)
        return {k: float(quantities[k]) for k in outcomes}

    def measure(truth: dict[str, float], rng: np.random.Generator) -> tuple[dict[str, float], dict[str, float]]:
        std = {k: relative_noise[k] * abs(v) if k in relative_noise else absolute_noise[k] for k, v in truth.items()}
        measured = {k: v + std[k] * float(rng.standard_normal()) for k, v in truth.items()}
        return measured, {k: s**2 for k, s in std.items()}

    def score(obs: list[Observation]) -> float:
        values = [
            o.outcomes[objective] for o in obs if all(c.violation(o.outcomes[c.name]) == 0.0 for c in constraints)
        ]
        return max(values) if values else -math.inf

    return BenchProblem(
        f"{key}:{scenario_name}",
        [ParameterSpec(p.name, p.low, p.high) for p in scenario.parameters],
        [ObjectiveSpec(objective, "maximize")],
        evaluate,
        score,
        optimum.value,
        0.01 * abs(optimum.value),
        abs(optimum.value),
        constraints,
        measure=measure,
        fractions=fractions,
    )


def tio2_problem() -> BenchProblem:
    return scenario_problem(
        "tio2",
        "tio2_calcination",
        "anatase_crystallite_size_nm",
        ("rutile_fraction", "<=", 0.10),
        {"anatase_crystallite_size_nm": 0.02},
        {"rutile_fraction": 0.003},
        fractions=("rutile_fraction",),
    )


def catalyst_problem(metallic_pd: bool = False) -> BenchProblem:
    return scenario_problem(
        "catalyst-pd" if metallic_pd else "catalyst",
        "ceria_zirconia_catalyst",
        "nio_surface_area_m2_per_g",
        ("pd_fraction", ">=", 0.01) if metallic_pd else None,
        {"nio_surface_area_m2_per_g": 0.02},
        {"pd_fraction": 0.003},
        fractions=("pd_fraction",) if metallic_pd else (),
    )


EXTRA_PROBLEMS: dict[str, Callable[[], BenchProblem]] = {}
"""Further problems by name, e.g. the sim_lab campaign scenarios scored against their ground truth."""


def register_problem(name: str, factory: Callable[[], BenchProblem]) -> None:
    """Add a problem to the bench (``--problems name``). Hook for the sim_lab scenarios."""
    EXTRA_PROBLEMS[name] = factory


def build_problems(names: Sequence[str], n_candidates: int) -> list[BenchProblem]:
    known: dict[str, Callable[[], BenchProblem]] = {
        "branin": branin_problem,
        "hartmann6": hartmann6_problem,
        "constrained": gardner_problem,
        "twoobj": branin_currin_problem,
        "finite": lambda: finite_problem(n_candidates),
        "tio2": tio2_problem,
        "catalyst": catalyst_problem,
        "catalyst-pd": lambda: catalyst_problem(metallic_pd=True),
        **EXTRA_PROBLEMS,
    }
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown problem(s) {unknown}; choose from {sorted(known)}")
    return [known[n]() for n in names]


# --- methods ---
def run_planner(
    cls: type,
    problem: BenchProblem,
    seed: int,
    budget: int,
    args: argparse.Namespace,
    snapped: bool = False,
    **options: Any,
) -> list[Observation]:
    """``budget`` experiments chosen by a planner of class ``cls`` with ``options``. With ``snapped`` (a
    diagnostic), a finite set is handled as for Ax and TPE: the planner optimises over the whole box, and each
    proposal is replaced by the nearest unused candidate before it is run and told."""
    finite = NearestUnusedCandidate(problem) if snapped and problem.candidates is not None else None
    kw: dict[str, Any] = {"seed": seed, "candidates": None if finite is not None else problem.candidates}
    if cls is BoTorchPlanner:
        kw.update(raw_samples=args.raw_samples, num_restarts=args.num_restarts, n_initial=args.n_initial)
        kw.update(fractions=problem.fractions)
    kw.update(options)
    planner = cls(problem.parameters, problem.objectives, problem.constraints, **kw)
    rng = np.random.default_rng(1000 + seed)
    truths = []
    for _ in range(budget):
        (p,) = planner.ask()
        conditions = finite.pick(p.conditions) if finite is not None else p.conditions
        told, truth = observe(problem, conditions, rng)
        planner.tell([told])
        truths.append(truth)
    return truths


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _distributions(parameters: Sequence[ParameterSpec]) -> dict[str, Any]:
    optuna = _optuna()
    out: dict[str, Any] = {}
    for p in parameters:
        if p.kind == "categorical":
            out[p.name] = optuna.distributions.CategoricalDistribution(list(p.choices or ()))
        elif p.kind == "integer":
            out[p.name] = optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log_scale)
        else:
            out[p.name] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log_scale)
    return out


class NearestUnusedCandidate:
    """For optimisers without finite sets (TPE, Ax): map each suggestion to the nearest candidate (in the unit
    cube) not picked before."""

    def __init__(self, problem: BenchProblem) -> None:
        assert problem.candidates is not None
        self.candidates = problem.candidates
        self.names = [p.name for p in problem.parameters]
        self.low = np.array([p.low for p in problem.parameters])
        self.span = np.array([p.high - p.low for p in problem.parameters])
        self.unit = (np.array([[c[n] for n in self.names] for c in self.candidates]) - self.low) / self.span
        self.used: set[int] = set()

    def pick(self, suggestion: dict[str, Any]) -> dict[str, Any]:
        u = (np.array([suggestion[n] for n in self.names]) - self.low) / self.span
        d = ((self.unit - u) ** 2).sum(-1)
        if self.used:
            d[list(self.used)] = np.inf
        k = int(d.argmin())
        self.used.add(k)
        return dict(self.candidates[k])


def run_tpe(problem: BenchProblem, seed: int, budget: int, args: argparse.Namespace) -> list[Observation]:
    """Optuna's TPE with its defaults; constraints via ``constraints_func``; a finite set by nearest unused
    pick."""
    optuna = _optuna()
    constraints_func = None
    if problem.constraints:
        constraints_func = lambda t: t.user_attrs["c"]  # noqa: E731
    sampler = optuna.samplers.TPESampler(seed=seed, constraints_func=constraints_func)
    directions = ["minimize" if o.direction == "minimize" else "maximize" for o in problem.objectives]
    study = optuna.create_study(directions=directions, sampler=sampler)
    dists = _distributions(problem.parameters)
    finite = NearestUnusedCandidate(problem) if problem.candidates is not None else None
    obs = []
    rng = np.random.default_rng(1000 + seed)
    for _ in range(budget):
        trial = study.ask(dists)
        cond = dict(trial.params)
        if finite is not None:
            cond = finite.pick(cond)
        told, truth = observe(problem, cond, rng)
        out = told.outcomes
        if problem.constraints:
            trial.set_user_attr(
                "c", [out[c.name] - c.value if c.op == "<=" else c.value - out[c.name] for c in problem.constraints]
            )
        values = [out[o.name] for o in problem.objectives]
        study.tell(trial, values if len(values) > 1 else values[0])
        obs.append(truth)
    return obs


def _quiet_ax() -> None:
    """Ax gives its loggers (``ax.api.client``, ...) their own INFO level, some created lazily: this process only
    prints its tables, so turn INFO records off altogether (before ``ax`` is imported: it logs on import)."""
    import logging

    logging.disable(logging.INFO)


def run_ax(
    problem: BenchProblem, seed: int, budget: int, args: argparse.Namespace, center: bool = True
) -> list[Observation]:
    """Ax's ``Client`` with its default generation strategy (Sobol, then BoTorch); noisy outcomes go with their
    standard errors; reference points as thresholds on the objectives; a finite set by nearest unused pick.

    Ax is not a dependency of Crucible: install ``ax-platform`` (1.3.1 resolves with the pinned botorch).
    """
    _quiet_ax()
    from ax import Client, RangeParameterConfig

    client = Client(random_seed=seed)
    client.configure_experiment(
        parameters=[RangeParameterConfig(p.name, (p.low, p.high), "float") for p in problem.parameters]
    )
    objective = ", ".join(("-" if o.direction == "minimize" else "") + o.name for o in problem.objectives)
    constraints = [f"{c.name} {c.op} {c.value!r}" for c in problem.constraints]
    if len(problem.objectives) > 1:
        constraints += [
            f"{o.name} {'<=' if o.direction == 'minimize' else '>='} {o.reference!r}"
            for o in problem.objectives
            if o.reference is not None
        ]
    client.configure_optimization(objective=objective, outcome_constraints=constraints or None)
    if not center:  # Ax's default design starts at the centre of the box; this variant starts with Sobol points only
        client.configure_generation_strategy(initialize_with_center=False)
    rng = np.random.default_rng(1000 + seed)
    finite = NearestUnusedCandidate(problem) if problem.candidates is not None else None
    obs = []
    for _ in range(budget):
        ((index, params),) = client.get_next_trials(max_trials=1).items()
        cond = dict(params)
        if finite is not None:
            cond = finite.pick(cond)
            client.mark_trial_abandoned(index)
            index = client.attach_trial(parameters=cond)
        told, truth = observe(problem, cond, rng)
        raw = {k: (v, math.sqrt(told.variances[k])) if told.variances else v for k, v in told.outcomes.items()}
        client.complete_trial(trial_index=index, raw_data=raw)
        obs.append(truth)
    return obs


METHODS: dict[str, Callable[[BenchProblem, int, int, argparse.Namespace], list[Observation]]] = {
    "crucible": lambda pr, s, b, a: run_planner(BoTorchPlanner, pr, s, b, a),
    "crucible-wins": lambda pr, s, b, a: run_planner(BoTorchPlanner, pr, s, b, a, winsorize=True),
    "crucible-center": lambda pr, s, b, a: run_planner(BoTorchPlanner, pr, s, b, a, center_first=True),
    "crucible-local-bilog": lambda pr, s, b, a: run_planner(BoTorchPlanner, pr, s, b, a, bilog=True, local_search=True),
    "crucible-local": lambda pr, s, b, a: run_planner(BoTorchPlanner, pr, s, b, a, local_search=True),
    "crucible-local-center": lambda pr, s, b, a: run_planner(
        BoTorchPlanner, pr, s, b, a, local_search=True, center_first=True
    ),
    "crucible-snapped": lambda pr, s, b, a: run_planner(BoTorchPlanner, pr, s, b, a, snapped=True),
    "random": lambda pr, s, b, a: run_planner(RandomPlanner, pr, s, b, a),
    "sobol": lambda pr, s, b, a: run_planner(SobolPlanner, pr, s, b, a),
    "tpe": run_tpe,
    "ax": run_ax,
    "ax-nocenter": lambda pr, s, b, a: run_ax(pr, s, b, a, center=False),
}


# --- figures ---
def regret_curve(problem: BenchProblem, obs: list[Observation]) -> list[float]:
    """Regret after each experiment ``1..len(obs)``."""
    out = []
    for k in range(1, len(obs) + 1):
        s = problem.score(obs[:k])
        out.append(problem.worst if s == -math.inf else max(problem.optimum - s, 0.0))
    return out


def _q(values: Sequence[float]) -> str:
    a = np.array(values, dtype=float)
    return f"{np.median(a):.3g} [{np.percentile(a, 25):.3g}, {np.percentile(a, 75):.3g}]"


def to_target(curve: Sequence[float], tol: float) -> float:
    for i, r in enumerate(curve):
        if r <= tol:
            return i + 1
    return math.inf


def _budgets(args: argparse.Namespace) -> dict[str, int]:
    """Per-problem budgets from ``--budget-for name=N,...`` (problem names as given to ``--problems``)."""
    out = {}
    for item in filter(None, args.budget_for.split(",")):
        name, _, n = item.partition("=")
        out[name] = int(n)
    return out


def method_runner(method: str) -> Callable[[BenchProblem, int, int, argparse.Namespace], list[Observation]]:
    """The runner of ``method``: a name in `METHODS`, or ``crucible[key=value;...]``, Crucible's planner with
    those `PlannerConfig` settings (values are Python literals), for diagnostics such as
    ``crucible[mc_samples=512;n_initial=8]``."""
    if method in METHODS:
        return METHODS[method]
    if method.startswith("crucible[") and method.endswith("]"):
        import ast

        options: dict[str, Any] = {}
        for item in filter(None, method[len("crucible[") : -1].split(";")):
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"method {method!r}: expected key=value, got {item!r}")
            options[key.strip()] = ast.literal_eval(value.strip())
        return lambda pr, s, b, a: run_planner(BoTorchPlanner, pr, s, b, a, **options)
    raise SystemExit(f"unknown method {method!r}; choose from {sorted(METHODS)} or crucible[key=value;...]")


_PROBLEM_CACHE: dict[str, BenchProblem] = {}


def _problem(key: str, n_candidates: int) -> BenchProblem:
    """The problem named ``key``, built once per process (the scenario optima take a few seconds)."""
    if key not in _PROBLEM_CACHE:
        (_PROBLEM_CACHE[key],) = build_problems([key], n_candidates)
    return _PROBLEM_CACHE[key]


def _one_run(key: str, method: str, seed: int, budget: int, args: argparse.Namespace) -> tuple[list[float], float]:
    """One method on one problem with one seed: its regret curve and the seconds it took."""
    torch.set_num_threads(1)
    problem = _problem(key, args.candidates)
    t0 = time.perf_counter()
    obs = method_runner(method)(problem, seed, budget, args)
    return regret_curve(problem, obs), time.perf_counter() - t0


def run_quality(args: argparse.Namespace) -> dict[str, Any]:
    names = args.problems.split(",")
    problems = build_problems(names, args.candidates)  # fail early on an unknown name
    _PROBLEM_CACHE.update(zip(names, problems, strict=True))
    budgets = _budgets(args)
    methods = args.methods.split(",")
    for m in methods:
        method_runner(m)  # fail early on an unknown method
    log = RunLog(Path(args.log)) if args.log else None
    pool = ProcessPoolExecutor(args.workers) if args.workers > 1 else None
    runs: dict[tuple[str, str, int], Any] = {}
    for key in names:  # everything is queued at once, in this order; tables are printed problem by problem
        for m in methods:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                task = (key, m, seed, budgets.get(key, args.budget), args)
                runs[(key, m, seed)] = pool.submit(_one_run, *task) if pool else task
                if pool and log:
                    runs[(key, m, seed)].add_done_callback(log.callback(problems[names.index(key)], m, seed))
    results: dict[str, Any] = {}
    for key, problem in zip(names, problems, strict=True):
        budget = budgets.get(key, args.budget)
        print_table_head(problem.name, problem.optimum, problem.tolerance, budget)
        results[problem.name] = {"budget": budget}
        for m in methods:
            curves, secs = [], []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                run = runs[(key, m, seed)]
                if pool:
                    curve, seconds = run.result()
                else:
                    curve, seconds = _one_run(*run)
                    if log:
                        log.write(problem, m, seed, curve, seconds)
                curves.append(curve)
                secs.append(seconds)
            results[problem.name][m] = print_method_row(m, curves, secs, problem.tolerance, budget, args.seeds)
    if pool:
        pool.shutdown()
    print_ratios(results, methods)
    return results


def _checkpoints(budget: int) -> list[int]:
    checkpoints = [c for c in CHECKPOINTS if c <= budget]
    if not checkpoints or budget > checkpoints[-1]:
        checkpoints.append(budget)
    return checkpoints


def print_table_head(name: str, optimum: float, tolerance: float, budget: int) -> None:
    print(f"\n## {name}  (best score {optimum:.6g}, 1 % tolerance {tolerance:.3g})")
    print(
        f"{'method':<10} "
        + " ".join(f"{'regret@' + str(c):>24}" for c in _checkpoints(budget))
        + f" {'n to 1%':>14} {'s/run':>7}",
        flush=True,
    )


def print_method_row(
    method: str, curves: list[list[float]], secs: list[float], tolerance: float, budget: int, seeds: int
) -> dict[str, Any]:
    """One method's row: regret quartiles at the checkpoints, experiments to 1 % (how many of ``seeds`` got
    there; a row with fewer finished runs than ``seeds`` says so), median seconds per run."""
    hits = [to_target(c, tolerance) for c in curves]
    med = statistics.median(hits)
    reached = sum(h < math.inf for h in hits)
    cells = " ".join(f"{_q([c[k - 1] for c in curves]):>24}" for k in _checkpoints(budget))
    med_s = f"{med:g}" if med < math.inf else f">{budget}"
    runs = f"{reached}/{len(curves)}" + ("" if len(curves) == seeds else f" of {len(curves)} runs")
    print(f"{method:<10} {cells} {med_s + f' ({runs})':>14} {statistics.median(secs):7.1f}", flush=True)
    return {"curves": curves, "to_1pct": hits, "median_to_1pct": med, "seconds": secs}


class RunLog:
    """Appends every finished run (problem, method, seed, regret curve, seconds) to a JSON-lines file as it
    finishes, so a long bench that is stopped keeps what it measured; ``--report LOG`` prints its tables."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def write(self, problem: BenchProblem, method: str, seed: int, curve: list[float], seconds: float) -> None:
        row = {
            "problem": problem.name,
            "optimum": problem.optimum,
            "tolerance": problem.tolerance,
            "method": method,
            "seed": seed,
            "curve": curve,
            "seconds": seconds,
        }
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def callback(self, problem: BenchProblem, method: str, seed: int) -> Callable[[Any], None]:
        def done(future: Any) -> None:
            if future.exception() is None:
                curve, seconds = future.result()
                self.write(problem, method, seed, curve, seconds)

        return done


def report_from_log(path: Path, seeds: int) -> dict[str, Any]:
    """The quality tables and ratios from a ``--log`` file, with the runs it holds (a stopped bench: fewer)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    problems: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        problems.setdefault(r["problem"], {}).setdefault(r["method"], []).append(r)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    results: dict[str, Any] = {}
    for name, by_method in problems.items():
        first = next(iter(by_method.values()))[0]
        budget = len(first["curve"])
        print_table_head(name, first["optimum"], first["tolerance"], budget)
        results[name] = {"budget": budget}
        for m in methods:
            runs = sorted(by_method.get(m, []), key=lambda r: r["seed"])
            if runs:
                curves, secs = [r["curve"] for r in runs], [r["seconds"] for r in runs]
                results[name][m] = print_method_row(m, curves, secs, first["tolerance"], budget, seeds)
    print_ratios(results, methods)
    return results


def print_ratios(results: dict[str, Any], methods: list[str]) -> None:
    if "crucible" not in methods:
        return
    others = [m for m in methods if m != "crucible"]
    print(
        "\n## experiments to reach 1 % of the optimum: median, and ratio other / Crucible (> 1: Crucible needs fewer)"
    )
    print(f"{'problem':<34} {'crucible':>9} " + " ".join(f"{m:>16}" for m in others) + "  fewest?")
    wins = 0
    for name, r in results.items():
        budget = r["budget"]
        c = r["crucible"]["median_to_1pct"]
        cells, best, missing = [], c < math.inf, False
        for m in others:
            if m not in r:  # a --report of a stopped bench: this method has no finished run here
                cells.append("-")
                missing = True
                continue
            o = r[m]["median_to_1pct"]
            best &= c < o
            if c < math.inf and o < math.inf:
                ratio = f"x{o / c:.2f}"
            elif c < math.inf:
                ratio = f">x{budget / c:.2f}"
            else:
                ratio = "-"
            cells.append(f"{_fmt(o, budget)} {ratio}")
        wins += best and not missing
        verdict = "  ? (a method has no run)" if missing else ("  yes" if best else "  no")
        print(f"{name:<34} {_fmt(c, budget):>9} " + " ".join(f"{s:>16}" for s in cells) + verdict)
    print(f"Crucible needs the fewest experiments on {wins} of {len(results)} problems")
    print_ratio_intervals(results, others)


def print_ratio_intervals(results: dict[str, Any], others: list[str], draws: int = 4000) -> None:
    """How sure each verdict is: for the method closest to Crucible on each problem, the ratio of medians
    (other / Crucible) with a 90 % bootstrap interval over seeds (seeds resampled independently per method; a
    run that never reached 1 % counts as ``budget + 1``, so ratios involving those are lower bounds)."""
    print("\n## how sure: median ratio closest method / Crucible, 90 % bootstrap interval over seeds")
    rng = np.random.default_rng(0)
    for name, r in results.items():
        present = [m for m in others if m in r]
        if not present:
            continue
        budget = r["budget"]
        capped = {m: np.minimum(np.array(r[m]["to_1pct"], dtype=float), budget + 1) for m in ["crucible", *present]}
        closest = min(present, key=lambda m: (float(np.median(capped[m])), float(capped[m].mean())))
        c, o = capped["crucible"], capped[closest]
        ci = rng.integers(0, c.size, (draws, c.size))
        oi = rng.integers(0, o.size, (draws, o.size))
        ratios = np.median(o[oi], axis=1) / np.median(c[ci], axis=1)
        lo, hi = np.quantile(ratios, [0.05, 0.95])
        point = float(np.median(o) / np.median(c))
        side = "Crucible fewer" if lo > 1 else (f"{closest} fewer" if hi < 1 else "not resolved by these seeds")
        print(f"{name:<34} {closest:>10}  x{point:.2f}  [{lo:.2f}, {hi:.2f}]  {side}")


def _fmt(v: float, budget: int) -> str:
    return f"{v:g}" if v < math.inf else f">{budget}"


# --- latency ---
def _latency_objectives(n_obj: int) -> list[ObjectiveSpec]:
    if n_obj == 1:
        return [ObjectiveSpec("h6", "minimize")]
    return [ObjectiveSpec("h6", "minimize", reference=0.0), ObjectiveSpec("sq", "minimize", reference=3.0)]


def _latency_data(n: int, seed: int) -> list[tuple[dict[str, float], dict[str, float]]]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 6, generator=g, dtype=torch.double)
    h = _H6(X)
    sq = ((X - 0.3) ** 2).sum(-1)
    return [
        ({f"x{i}": float(v) for i, v in enumerate(x)}, {"h6": float(a), "sq": float(b)})
        for x, a, b in zip(X.tolist(), h, sq, strict=True)
    ]


def run_latency(args: argparse.Namespace) -> dict[str, Any]:
    params = [ParameterSpec(f"x{i}", 0.0, 1.0) for i in range(6)]
    sizes = [int(s) for s in args.latency_sizes.split(",")]
    others = args.latency_methods.split(",")
    timers = {"tpe": _tpe_latency, "ax": _ax_latency}
    print("\n## latency of one ask (s, median of repeats), 6-D; Crucible includes the model fit")
    warm_up_s = _warm_up(params)
    print(
        f"{'objectives':>10} {'n obs':>6} {'q':>3} {'crucible':>10} "
        + " ".join(f"{m:>10} {'ratio':>8}" for m in others)
        + "   (ratio: Crucible / other)"
    )
    out: dict[str, Any] = {"warm_up_s": warm_up_s}
    for n_obj in (1, 2):
        for n in sizes:
            data = _latency_data(n, seed=n)
            for q in (1, 4):
                times: dict[str, list[float]] = {"crucible": [], **{m: [] for m in others}}
                for r in range(args.latency_repeats):
                    objs = _latency_objectives(n_obj)
                    planner = BoTorchPlanner(
                        params, objs, seed=r, raw_samples=args.raw_samples, num_restarts=args.num_restarts
                    )
                    planner.tell([Observation(c, {o.name: y[o.name] for o in objs}) for c, y in data])
                    t0 = time.perf_counter()
                    props = planner.ask(q)
                    times["crucible"].append(time.perf_counter() - t0)
                    assert props[0].strategy.startswith("qLogNE")
                    for m in others:
                        times[m].append(timers[m](params, objs, data, q, seed=r))
                c = statistics.median(times["crucible"])
                cells = []
                for m in others:
                    t = statistics.median(times[m])
                    cells.append(f"{t:>10.3f} {c / t:>8.2f}")
                print(f"{n_obj:>10} {n:>6} {q:>3} {c:>10.3f} " + " ".join(cells), flush=True)
                out[f"{n_obj}obj-n{n}-q{q}"] = times
    return out


def _warm_up(params: list[ParameterSpec]) -> float:
    """One untimed two-objective ask first: BoTorch's qLogNEHVI loads a fused C++ kernel on first use in a
    process, and JIT-compiles it on first use on a machine (cached in ~/.cache/torch_extensions); that one-off
    cost is printed apart, not counted as latency."""
    objs = _latency_objectives(2)
    planner = BoTorchPlanner(params, objs, seed=0, raw_samples=32, num_restarts=2)
    planner.tell([Observation(c, {o.name: y[o.name] for o in objs}) for c, y in _latency_data(10, seed=10)])
    t0 = time.perf_counter()
    planner.ask(1)
    seconds = time.perf_counter() - t0
    print(f"(warm-up: first two-objective ask of this process, {seconds:.1f} s, not counted)", flush=True)
    return seconds


def _ax_latency(params, objs, data, q: int, seed: int) -> float:
    """Ax's ``Client`` told ``data``, asked for ``q`` trials by its model (no initial Sobol trials left)."""
    _quiet_ax()
    from ax import Client, RangeParameterConfig

    client = Client(random_seed=seed)
    client.configure_experiment(parameters=[RangeParameterConfig(p.name, (p.low, p.high), "float") for p in params])
    client.configure_optimization(
        objective=", ".join(("-" if o.direction == "minimize" else "") + o.name for o in objs),
        outcome_constraints=[f"{o.name} <= {o.reference!r}" for o in objs if o.reference is not None] or None,
    )
    client.configure_generation_strategy(initialization_budget=0)  # attached trials do not count as Sobol ones
    for conditions, y in data:
        index = client.attach_trial(parameters=conditions)
        client.complete_trial(trial_index=index, raw_data={o.name: y[o.name] for o in objs})
    t0 = time.perf_counter()
    client.get_next_trials(max_trials=q)
    return time.perf_counter() - t0


def _tpe_latency(params, objs, data, q: int, seed: int) -> float:
    optuna = _optuna()
    dists = _distributions(params)
    study = optuna.create_study(directions=["minimize"] * len(objs), sampler=optuna.samplers.TPESampler(seed=seed))
    trials = [
        optuna.trial.create_trial(params=c, distributions=dists, values=[y[o.name] for o in objs]) for c, y in data
    ]
    study.add_trials(trials)
    t0 = time.perf_counter()
    for _ in range(q):
        study.ask(dists)
    return time.perf_counter() - t0


# --- main ---
def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=80)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--problems", default="branin,hartmann6,constrained,twoobj,finite,tio2,catalyst")
    ap.add_argument("--workers", type=int, default=1, help="processes for the (problem, method, seed) runs")
    ap.add_argument("--methods", default="crucible,random,sobol,tpe", help="also: ax (needs ax-platform)")
    ap.add_argument("--budget-for", default="twoobj=120", help="per-problem budgets, e.g. twoobj=160")
    ap.add_argument("--candidates", type=int, default=10_000, help="size of the finite candidate set")
    ap.add_argument("--raw-samples", type=int, default=256)
    ap.add_argument("--num-restarts", type=int, default=8)
    ap.add_argument("--n-initial", type=int, default=5)
    ap.add_argument("--latency-sizes", default="20,100,300")
    ap.add_argument("--latency-repeats", type=int, default=3)
    ap.add_argument("--latency-methods", default="tpe", help="next to Crucible's latency; also: ax")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--latency-only", action="store_true")
    ap.add_argument("--quick", action="store_true", help="3 seeds, budget 20, latency at 20, 100; 1 repeat")
    ap.add_argument("--out", default="", help="write all figures as JSON to this path")
    ap.add_argument("--log", default="", help="append each finished run to this JSON-lines file as it finishes")
    ap.add_argument("--report", default="", help="print the quality tables of a --log file, then stop")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.latency_sizes, args.latency_repeats = 3, 20, "20,100", 1
    torch.set_num_threads(1)
    from threadpoolctl import threadpool_info

    kernels = "; ".join(f"{i['internal_api']} {i.get('architecture') or ''}".strip() for i in threadpool_info())
    blas_env = ", ".join(f"{k}={os.environ.get(k)}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))
    print(f"# BLAS: {kernels}; {blas_env}; workers={args.workers}")
    print(
        f"# planner bench: seeds={args.seeds} budget={args.budget} raw_samples={args.raw_samples} "
        f"num_restarts={args.num_restarts} torch {torch.__version__}",
        flush=True,
    )
    if args.report:
        report_from_log(Path(args.report), args.seeds)
        return
    results: dict[str, Any] = {"args": vars(args)}
    if not args.latency_only:
        results["quality"] = run_quality(args)
    if not args.skip_latency:
        results["latency"] = run_latency(args)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
