"""Benchmark of the planners on real experimental pools: the published pool protocol, methods side by side.

A pool is a CSV of measured experiments (named input columns and one objective column), e.g. the five real
datasets of ``../shared/real_pools/`` (Olympus collection). The protocol (as pool-based benchmarks of Bayesian
optimisation for materials use it, Liang et al., npj Comput. Mater. 2021):

- rows with identical inputs are grouped, the objective is the mean of the distinct values measured there;
- inputs are min-max scaled to [0, 1] over the pool;
- a campaign starts from 2 pool points drawn at random, then picks one unused pool point per cycle, seeing only
  the objectives of the points it has picked;
- "Top%" is the share of the pool's best 5 % (``ceil(0.05 N)`` points) found so far; the score of a run is the
  number of cycles (counting the 2 initial points) to reach Top% 0.5 and 0.8.

Every method of one repeat starts from the same 2 points (seeds shared by every method). Methods:

- ``crucible``: Crucible's `BoTorchPlanner` with its defaults (``candidates=`` the pool, ``n_initial=2``);
  ``crucible[key=value;...]`` sets `PlannerConfig` fields (Python literals), e.g. ``crucible[kernel='rbf']``;
- ``random``: unused pool points in random order;
- ``gp-ei`` / ``gp-lcb``: the reference plain GP, refit every cycle: BoTorch ``SingleTaskGP`` with an ARD
  Matern-5/2 kernel in a ``ScaleKernel`` (no lengthscale priors), outcomes standardised, analytic log expected
  improvement / a confidence bound ``mean + 2 std`` on the utility (a lower confidence bound when minimising);
- ``tpe``: Optuna's TPE over the unit box, each suggestion run at the nearest unused pool point (the suggestion is
  recorded as failed and the point run is added as a trial with its value, so TPE learns from what was measured).

Printed per pool: cycles to Top% 0.5 and 0.8 (median [25 %, 75 %], runs that got there), the acceleration factor
over random (random's median / the method's), and the paired comparison of Crucible's default with each other
method: the ratio of medians over the same seeds with a 95 % bootstrap interval (resampling seeds, paired;
above 1 means Crucible needed fewer cycles). A run that does not reach Top% 0.8 within ``--max-cycles`` counts as
``--max-cycles`` (the tables mark it).

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -W ignore bench/pools.py [--repeats 20]
[--workers 2] [--pools ../shared/real_pools] [--methods crucible,random,gp-ei,gp-lcb,tpe] [--log F.jsonl]
[--report F.jsonl]``; runs already in ``--log`` are not run again. A CSV of one's own:
``--pools my.csv --objective yield --goal max``.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_ROOT = str(Path(__file__).resolve().parents[1])
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

DEFAULT_POOLS = Path(_ROOT).parent / "shared" / "real_pools"
GOALS = {  # objective column and direction of the five datasets of ../shared/real_pools (its README)
    "photo_pce10": ("degradation", "min"),
    "photo_wf3": ("degradation", "min"),
    "colors_bob": ("difference_to_green", "min"),
    "snar": ("impurity", "min"),
    "hplc": ("peak_area", "max"),
}
N_INITIAL = 2
TOP_SHARE = 0.05
LEVELS = (0.5, 0.8)


@dataclass(frozen=True)
class Pool:
    """A finite pool of measured experiments on the protocol's scale.

    Args:
        name: The dataset's name (its file stem).
        inputs: Input column names.
        objective: The objective column.
        X: ``N x d`` inputs min-max scaled to [0, 1].
        utility: ``N`` objective values oriented so that larger is better (negated when minimising).
        top: Indices of the pool's best ``ceil(0.05 N)`` points.
    """

    name: str
    inputs: tuple[str, ...]
    objective: str
    goal: str
    X: np.ndarray
    utility: np.ndarray
    top: frozenset[int]

    @property
    def size(self) -> int:
        return int(self.X.shape[0])


def load_pool(path: Path, objective: str | None = None, goal: str | None = None) -> Pool:
    """Read a pool CSV (header line of column names): group identical inputs, average the distinct objective
    values measured at each, scale the inputs to [0, 1]."""
    name = path.stem
    default_objective, default_goal = GOALS.get(name, (None, None))
    objective = objective or default_objective
    goal = goal or default_goal
    with path.open() as f:
        header = f.readline().strip().split(",")
    if objective is None:
        objective = header[-1]
    if goal not in ("min", "max"):
        raise SystemExit(f"{path}: give --goal min or max for objective {objective!r}")
    if objective not in header:
        raise SystemExit(f"{path}: no column {objective!r} in {header}")
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    j = header.index(objective)
    inputs = tuple(h for i, h in enumerate(header) if i != j)
    raw_X = np.delete(data, j, axis=1)
    groups: dict[tuple[float, ...], set[float]] = {}
    for x, y in zip(raw_X, data[:, j], strict=True):
        groups.setdefault(tuple(float(v) for v in x), set()).add(float(y))
    X = np.array(list(groups), dtype=float)
    y = np.array([statistics.fmean(v) for v in groups.values()])
    span = X.max(0) - X.min(0)
    X = (X - X.min(0)) / np.where(span > 0, span, 1.0)
    utility = y if goal == "max" else -y
    n_top = math.ceil(TOP_SHARE * len(y))
    top = frozenset(int(i) for i in np.argsort(-utility, kind="stable")[:n_top])
    return Pool(name, inputs, objective, goal, X, utility, top)


def initial_points(pool: Pool, repeat: int) -> list[int]:
    """The 2 random starting points of one repeat, the same for every method."""
    return [int(i) for i in np.random.default_rng(repeat).choice(pool.size, N_INITIAL, replace=False)]


# ---------------------------------------------------------------------------------------------- methods
Picker = Callable[[Pool, list[int], int], int]  # (pool, picked so far, repeat) -> next index


def make_random(pool: Pool, repeat: int) -> Picker:
    order = np.random.default_rng(10_000 + repeat).permutation(pool.size)

    def pick(pool: Pool, picked: list[int], repeat: int) -> int:
        seen = set(picked)
        return next(int(i) for i in order if int(i) not in seen)

    return pick


def make_plain_gp(acquisition: str) -> Callable[[Pool, int], Picker]:
    """The reference plain GP: ARD Matern-5/2 in a ScaleKernel, standardised outcomes, refit every cycle."""

    def factory(pool: Pool, repeat: int) -> Picker:
        import torch
        from botorch.acquisition import LogExpectedImprovement, UpperConfidenceBound
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.kernels import MaternKernel, ScaleKernel
        from gpytorch.mlls import ExactMarginalLogLikelihood

        C = torch.tensor(pool.X, dtype=torch.double)

        def pick(pool: Pool, picked: list[int], repeat: int) -> int:
            torch.manual_seed(repeat * 100_003 + len(picked))
            X = C[picked]
            Y = torch.tensor(pool.utility[picked], dtype=torch.double).unsqueeze(-1)
            covar = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=X.shape[-1]))
            model = SingleTaskGP(X, Y, covar_module=covar, outcome_transform=Standardize(m=1))
            try:
                fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
            except Exception:  # noqa: BLE001 - a failed fit keeps the initial hyperparameters, as a user would
                pass
            if acquisition == "ei":
                acqf = LogExpectedImprovement(model, best_f=Y.max())
            else:
                acqf = UpperConfidenceBound(model, beta=4.0)  # mean + 2 std
            free = torch.tensor([i for i in range(pool.size) if i not in set(picked)])
            with torch.no_grad():
                values = torch.cat([acqf(C[chunk].unsqueeze(1)) for chunk in free.split(4096)])
            return int(free[int(values.argmax())])

        return pick

    return factory


def make_tpe(pool: Pool, repeat: int) -> Picker:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=repeat)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dists = {f"x{k}": optuna.distributions.FloatDistribution(0.0, 1.0) for k in range(pool.X.shape[1])}
    told: set[int] = set()

    def tell(i: int) -> None:
        params = {f"x{k}": float(v) for k, v in enumerate(pool.X[i])}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(pool.utility[i])))
        told.add(i)

    def pick(pool: Pool, picked: list[int], repeat: int) -> int:
        for i in picked:
            if i not in told:
                tell(i)
        trial = study.ask(dists)
        u = np.array([trial.params[f"x{k}"] for k in range(pool.X.shape[1])])
        d = ((pool.X - u) ** 2).sum(1)
        d[list(told)] = np.inf
        i = int(d.argmin())
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return i

    return pick


def make_crucible(options: dict[str, Any]) -> Callable[[Pool, int], Picker]:
    """Crucible's planner on the pool, with `PlannerConfig` ``options`` over its defaults."""

    def factory(pool: Pool, repeat: int) -> Picker:
        from agents.planner import BoTorchPlanner, ObjectiveSpec, Observation, ParameterSpec

        names = [f"x{k}" for k in range(pool.X.shape[1])]
        rows = [dict(zip(names, (float(v) for v in x), strict=True)) for x in pool.X]
        index = {tuple(r.values()): i for i, r in enumerate(rows)}
        planner = BoTorchPlanner(
            [ParameterSpec(n, 0.0, 1.0) for n in names],
            [ObjectiveSpec("y", "maximize")],
            candidates=rows,
            n_initial=N_INITIAL,
            seed=repeat,
            **options,
        )
        told: set[int] = set()

        def pick(pool: Pool, picked: list[int], repeat: int) -> int:
            new = [i for i in picked if i not in told]
            planner.tell([Observation(rows[i], {"y": float(pool.utility[i])}) for i in new])
            told.update(new)
            (proposal,) = planner.ask()
            key = tuple(float(proposal.conditions[n]) for n in names)
            if key not in index:
                raise RuntimeError(f"crucible proposed {proposal.conditions}, not a pool point")
            return index[key]

        return pick

    return factory


def method_factory(method: str) -> Callable[[Pool, int], Picker]:
    if method == "random":
        return make_random
    if method == "gp-ei":
        return make_plain_gp("ei")
    if method == "gp-lcb":
        return make_plain_gp("lcb")
    if method == "tpe":
        return make_tpe
    if method == "crucible":
        return make_crucible({})
    if method.startswith("crucible[") and method.endswith("]"):
        options: dict[str, Any] = {}
        for item in filter(None, method[len("crucible[") : -1].split(";")):
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"method {method!r}: expected key=value, got {item!r}")
            options[key.strip()] = ast.literal_eval(value.strip())
        return make_crucible(options)
    raise SystemExit(f"unknown method {method!r}; choose crucible, crucible[k=v;...], random, gp-ei, gp-lcb, tpe")


# ---------------------------------------------------------------------------------------------- one run
def run_once(pool: Pool, method: str, repeat: int, max_cycles: int) -> dict[str, Any]:
    """One campaign on ``pool``: cycles to each Top% level (None if not reached within ``max_cycles``)."""
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    picked = initial_points(pool, repeat)
    pick = method_factory(method)(pool, repeat)
    cycles: dict[str, int | None] = {str(level): None for level in LEVELS}
    found = len(pool.top.intersection(picked))
    limit = min(max_cycles, pool.size)
    while True:
        share = found / len(pool.top)
        for level in LEVELS:
            if cycles[str(level)] is None and share >= level:
                cycles[str(level)] = len(picked)
        if cycles[str(LEVELS[-1])] is not None or len(picked) >= limit:
            break
        i = pick(pool, picked, repeat)
        if i in picked:
            raise RuntimeError(f"{method} picked pool point {i} twice")
        picked.append(i)
        found += i in pool.top
    return {
        "pool": pool.name,
        "method": method,
        "repeat": repeat,
        "cycles": cycles,
        "limit": limit,
        "seconds": time.perf_counter() - t0,
    }


_POOLS: dict[str, Pool] = {}


def _run_job(path: str, objective: str | None, goal: str | None, method: str, repeat: int, limit: int) -> dict:
    if path not in _POOLS:
        _POOLS[path] = load_pool(Path(path), objective, goal)
    return run_once(_POOLS[path], method, repeat, limit)


# ---------------------------------------------------------------------------------------------- report
def _cycles(run: dict[str, Any], level: float) -> tuple[int, bool]:
    """Cycles to ``level`` and whether it was reached (a run that did not counts as its limit)."""
    c = run["cycles"][str(level)]
    return (run["limit"], False) if c is None else (int(c), True)


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return float(q[1]), float(q[0]), float(q[2])


def paired_ratio(ours: Sequence[float], theirs: Sequence[float], n_boot: int = 4000, seed: int = 0) -> tuple:
    """Ratio of medians ``median(theirs) / median(ours)`` over the same repeats, with a 95 % paired bootstrap
    interval (repeats resampled together); above 1 means ours needed fewer cycles."""
    a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    ratios = np.median(b[idx], axis=1) / np.median(a[idx], axis=1)
    return float(np.median(b) / np.median(a)), float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def report(runs: list[dict[str, Any]], methods: Sequence[str], reference: str) -> None:
    pools = list(dict.fromkeys(r["pool"] for r in runs))
    for pool in pools:
        by_method: dict[str, dict[int, dict]] = {}
        for r in runs:
            if r["pool"] == pool:
                by_method.setdefault(r["method"], {})[r["repeat"]] = r
        by_method = {m: runs_of for m, runs_of in by_method.items() if m in methods}  # the methods asked for
        if not by_method:
            continue
        shown = [m for m in methods if m in by_method]
        repeats = sorted(set.intersection(*(set(v) for v in by_method.values())))
        if not repeats:
            continue
        limit = max(r["limit"] for m in shown for r in by_method[m].values())
        print(f"\n## {pool}  ({len(repeats)} repeats shared by every method; run limit {limit} cycles)")
        print(f"{'method':34s} {'Top%0.5 median [IQR]':>24s} {'Top%0.8 median [IQR]':>24s} {'reached':>8s}"
              f" {'x random':>9s} {'s/run':>7s}")
        random_median = None
        if "random" in by_method:
            random_median = _quartiles([_cycles(by_method["random"][k], 0.8)[0] for k in repeats])[0]
        for m in shown:
            cells = []
            for level in LEVELS:
                values = [_cycles(by_method[m][k], level)[0] for k in repeats]
                med, lo, hi = _quartiles(values)
                cells.append(f"{med:g} [{lo:g}, {hi:g}]")
            reached = sum(_cycles(by_method[m][k], 0.8)[1] for k in repeats)
            med8 = _quartiles([_cycles(by_method[m][k], 0.8)[0] for k in repeats])[0]
            accel = f"{random_median / med8:.2f}" if random_median else "-"
            secs = statistics.fmean(by_method[m][k]["seconds"] for k in repeats)
            print(f"{m:34s} {cells[0]:>24s} {cells[1]:>24s} {reached:>4d}/{len(repeats):<3d} {accel:>9s} {secs:7.1f}")
        if reference in by_method:
            ours = [_cycles(by_method[reference][k], 0.8)[0] for k in repeats]
            print(f"paired, Top% 0.8: median(method) / median({reference}) [95 % bootstrap]; > 1 favours {reference}")
            for m in shown:
                if m == reference:
                    continue
                theirs = [_cycles(by_method[m][k], 0.8)[0] for k in repeats]
                ratio, lo, hi = paired_ratio(ours, theirs)
                wins = sum(o < t for o, t in zip(ours, theirs, strict=True))
                losses = sum(o > t for o, t in zip(ours, theirs, strict=True))
                print(f"  vs {m:30s} {ratio:5.2f} [{lo:.2f}, {hi:.2f}]   {reference} fewer on {wins}, more on {losses}")


def _blas() -> str:
    try:
        from threadpoolctl import threadpool_info

        return ", ".join(f"{i.get('internal_api')} {i.get('architecture', '')} x{i.get('num_threads')}"
                         for i in threadpool_info())
    except Exception as e:  # noqa: BLE001
        return f"unknown ({e})"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pools", default=str(DEFAULT_POOLS), help="a directory of pool CSVs or comma-separated CSVs")
    ap.add_argument("--objective", default=None, help="objective column of a CSV not among the five known pools")
    ap.add_argument("--goal", choices=("min", "max"), default=None, help="minimise or maximise that objective")
    ap.add_argument("--methods", default="crucible,random,gp-ei,gp-lcb,tpe")
    ap.add_argument("--reference", default="", help="the method the paired comparison is against (default: first)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--first-repeat", type=int, default=0)
    ap.add_argument("--max-cycles", type=int, default=400, help="a model-based run stops here (random runs to N)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--log", default="", help="append each finished run to this JSON-lines file")
    ap.add_argument("--report", default="", help="print the tables of a --log file (comma-separated files), stop")
    args = ap.parse_args(argv)
    methods = _split_methods(args.methods)
    reference = args.reference or methods[0]
    if args.report:
        runs = [json.loads(line) for f in args.report.split(",") for line in Path(f).read_text().splitlines() if line]
        report(runs, methods, reference)
        return
    source = Path(args.pools)
    paths = sorted(source.glob("*.csv")) if source.is_dir() else [Path(p) for p in args.pools.split(",")]
    if not paths:
        raise SystemExit(f"no pool CSVs in {source}")
    print(f"# bench/pools.py  {time.strftime('%Y-%m-%d %H:%M')}  BLAS: {_blas()}")
    print(f"# OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')!r}  workers={args.workers}  repeats="
          f"{args.first_repeat}..{args.first_repeat + args.repeats - 1}  methods={methods}")
    for path in paths:
        pool = load_pool(path, args.objective, args.goal)
        print(f"# {pool.name}: {pool.size} distinct points of {len(pool.inputs)} inputs, objective {pool.objective}"
              f" ({pool.goal}), top {len(pool.top)}")
    # Repeat-major order: a bench stopped early has the same repeats on every pool. Runs already in --log are kept.
    runs: list[dict[str, Any]] = []
    done: set[tuple[str, str, int]] = set()
    if args.log and Path(args.log).exists():
        runs = [json.loads(line) for line in Path(args.log).read_text().splitlines() if line]
        runs = [r for r in runs if r["method"] in methods]
        done = {(r["pool"], r["method"], r["repeat"]) for r in runs}
    jobs = [
        (str(p), args.objective, args.goal, m, k, 10**9 if m == "random" else args.max_cycles)
        for k in range(args.first_repeat, args.first_repeat + args.repeats)
        for p in paths
        for m in methods
        if (p.stem, m, k) not in done
    ]
    print(f"# {len(done)} runs from {args.log}, {len(jobs)} to run", flush=True)
    if args.log:
        Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    log = Path(args.log).open("a") if args.log else None
    with ProcessPoolExecutor(max_workers=args.workers) as pool_executor:
        futures = [pool_executor.submit(_run_job, *job) for job in jobs]
        for n, future in enumerate(as_completed(futures), 1):
            run = future.result()
            runs.append(run)
            if log is not None:
                log.write(json.dumps(run) + "\n")
                log.flush()
            if n % 20 == 0 or n == len(futures):
                print(f"# {n}/{len(futures)} runs done", flush=True)
    report(runs, methods, reference)


def _split_methods(text: str) -> list[str]:
    """Split a comma-separated method list, keeping commas inside ``crucible[...]`` brackets."""
    out, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        out.append(current.strip())
    return out


if __name__ == "__main__":
    main()
