"""Whole-campaign benchmark: campaigns as ``crucible run --sim`` runs them, scored against the simulated truth.

Every run starts the simulated lab's instrument server processes (one per instrument, over ZeroMQ), opens a campaign
in a fresh SQLite file and drives it with the real :class:`~orchestrator.scheduler.Scheduler` (its in-flight bound,
the real XRD analysis of every pattern, the planner asked with pending points). The one difference from the CLI is
that steps run on the scheduler's thread executor rather than as Prefect tasks (same scheduler, same campaign
steps, no Prefect server per run). Methods go through the same loop: the BoTorch planner, Sobol and random.

For each scenario with a known optimum and each number of synthesisers it prints, over seeds: experiments and
simulated lab hours to reach within 1 % of the true optimum (median [quartiles], '>' where not reached), true
regret after 10/20/40 experiments, the share of proposals the model made, and beside them the planner's own
ask/tell figure on the same problem (``bench/planner.py``'s loop: no lab, no pending points, truth-noise only),
so the cost of asynchrony and of the real analysis shows.

With ``--time-factor 0`` (the default, as in the demo) instruments answer at once, so the experiments pending at each
proposal are few: the in-flight bound is exercised, but not the asynchrony of slow furnaces; a positive time
factor makes the pending sets those of a real lab (and the run slower). Simulated lab hours are replayed from the
record: each experiment is planned once the results its proposal saw
were in (the proposal records which experiments were pending), then waits for its synthesiser and diffractometer,
which take the durations the simulated instruments reported (anneal ramps and dwell, scan time). Planning and
analysis count as instant in lab time; their wall time is printed as s/run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -W ignore bench/campaign.py --seeds 10 --workers 2

Scenarios (each a shipped campaign file; ``--scenarios`` picks them):

- ``tio2`` (``examples/tio2_anneal.yaml``: maximise the anatase crystallite size with rutile at most 10 wt%, the
  demo campaign; furnace -> XRD);
- ``nanoparticles`` (``examples/ceria_nanoparticles.yaml``: synthesis -> SAXS -> PDF; a 3 nm SAXS radius as the
  first objective, a narrow size distribution as the second). Scored on the first objective: "within 1 %" means a
  true radius within 1 % of the target (0.03 nm) at conditions that meet the constraint in truth; the second
  objective steers the planner but is not scored here;
- ``xrd-xas`` (``examples/ceria_xrd_xas.yaml``: synthesis -> XRD -> XAS; the most Ce3+ (XAS) in crystallites of at
  least 4 nm (XRD)).

The ask/tell column exists only for ``tio2`` (the planner bench has its problem); the composition spread is a
phase-mapping problem without a single optimum and is not benched here.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

SCENARIOS: dict[str, dict[str, Any]] = {
    "tio2": {"file": ROOT / "examples" / "tio2_anneal.yaml", "planner_problem": "tio2"},
    "nanoparticles": {"file": ROOT / "examples" / "ceria_nanoparticles.yaml", "planner_problem": None},
    "xrd-xas": {"file": ROOT / "examples" / "ceria_xrd_xas.yaml", "planner_problem": None},
}
CHECKPOINTS = (10, 20, 40)


def campaign_data(
    scenario: str, synthesisers: int, method: str, seed: int, budget: int, time_factor: float = 0.0
) -> dict[str, Any]:
    """The scenario's campaign file with ``synthesisers`` furnaces, ``method`` as planner, on free ports."""
    from tests.conftest import free_tcp_address

    data = yaml.safe_load(SCENARIOS[scenario]["file"].read_text())
    data["name"] = f"bench-{scenario}-{synthesisers}-{method}-{seed}"
    data["seed"] = seed
    data["budget"] = {"experiments": budget, "batch_size": 1}
    data["planner"]["name"] = method
    data["simulation"].update(seed=seed, time_factor=time_factor)
    furnace = next(v for v in data["instruments"].values() if v["kind"] == "synthesiser")
    others = {k: v for k, v in data["instruments"].items() if v["kind"] != "synthesiser"}
    data["instruments"] = {f"furnace-{i + 1}": dict(furnace) for i in range(synthesisers)} | others
    for instrument in data["instruments"].values():
        instrument["address"] = free_tcp_address()
    return data


def lab_hours(experiments: list[Any], proposals: dict[str, Any], store: Any) -> list[float]:
    """Simulated hours at which each experiment's result was in hand, replayed from the record (see module doc)."""
    done: dict[int, float] = {}
    free: dict[str, float] = defaultdict(float)
    planned_at = 0.0
    for experiment in experiments:
        proposal = proposals[experiment.id]
        pending = set(proposal.pending)
        seen = [done[j] for j in range(experiment.index) if j not in pending and j in done]
        planned_at = max([planned_at, *seen])
        t = planned_at
        for result in store.step_results(experiment.id):  # each workflow step waits for its instrument
            reading = result.reading
            duration = (reading or {}).get("metadata", {}).get("duration_s") if reading else result.result.get(
                "duration_s"
            )
            t = max(t, free[result.instrument]) + float(duration or 0.0)
            free[result.instrument] = t
        done[experiment.index] = t
    return [done[e.index] / 3600.0 for e in experiments]


def run_campaign(
    scenario: str, synthesisers: int, method: str, seed: int, budget: int, time_factor: float = 0.0
) -> dict[str, Any]:
    """One whole campaign; its regret curve against truth, lab hours, and what proposed each experiment."""
    import torch

    torch.set_num_threads(1)
    from orchestrator.campaign import Campaign
    from orchestrator.lab import Lab
    from orchestrator.scheduler import Scheduler, ThreadExecutor
    from orchestrator.simulated_lab import SimulatedLab, truth_scores
    from orchestrator.spec import parse_campaign
    from orchestrator.store import Store

    spec = parse_campaign(campaign_data(scenario, synthesisers, method, seed, budget, time_factor))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        store = Store(f"sqlite:///{directory}/campaign.db")
        with SimulatedLab(spec, Path(directory) / "tray"), Lab.from_spec(spec) as lab:
            campaign = Campaign.open(spec, store, lab)
            executor = ThreadExecutor()
            Scheduler(campaign, executor).run()
            executor.close()
            campaign.finish()
        wall_s = time.perf_counter() - start
        experiments = campaign.experiments()
        proposals = store.proposals(campaign.id)
        hours = lab_hours(experiments, proposals, store)
        true_values, _, optimum = truth_scores(spec, [e.conditions for e in experiments])
        store.close()
    objective = spec.objectives[0]
    sign = -1.0 if objective.direction == "minimize" else 1.0
    tolerance = 0.01 * abs(objective.target if objective.target is not None else optimum)
    best, regret = -math.inf, []
    for value in true_values:
        if not math.isnan(value):
            best = max(best, sign * value)
        regret.append(sign * optimum - best if math.isfinite(best) else math.inf)
    ordered = [proposals[e.id] for e in experiments]
    return {
        "scenario": scenario,
        "synthesisers": synthesisers,
        "method": method,
        "seed": seed,
        "optimum": optimum,
        "tolerance": tolerance,
        "regret": regret,
        "hours": hours,
        "model_made": [bool(p.model_made) for p in ordered],
        "pending": [len(p.pending) for p in ordered],
        "failed": sum(e.status == "failed" for e in experiments),
        "wall_s": wall_s,
    }


def run_ask_tell(scenario: str, seed: int, budget: int) -> dict[str, Any]:
    """The planner alone on the same problem (bench/planner.py's loop), for the side-by-side figure."""
    import bench.planner as planner_bench

    args = argparse.Namespace(raw_samples=256, num_restarts=8, n_initial=5, candidates=10_000)
    start = time.perf_counter()
    curve, _ = planner_bench._one_run(SCENARIOS[scenario]["planner_problem"], "crucible", seed, budget, args)
    return {
        "scenario": scenario,
        "synthesisers": 0,
        "method": "ask/tell",
        "seed": seed,
        "optimum": planner_bench._problem(SCENARIOS[scenario]["planner_problem"], 10_000).optimum,
        "regret": curve,
        "hours": [math.nan] * len(curve),
        "model_made": [i >= 5 for i in range(len(curve))],
        "pending": [0] * len(curve),
        "failed": 0,
        "wall_s": time.perf_counter() - start,
    }


def _one(job: tuple[str, int, str, int, int, float]) -> dict[str, Any]:
    scenario, synthesisers, method, seed, budget, time_factor = job
    if method == "ask/tell":
        return run_ask_tell(scenario, seed, budget)
    return run_campaign(scenario, synthesisers, method, seed, budget, time_factor)


# --- the table ---------------------------------------------------------------------------------------------------
def _first_within(regret: list[float], tolerance: float) -> int | None:
    return next((i for i, r in enumerate(regret) if r <= tolerance), None)


def _quartiles(values: list[float], budget_label: str) -> str:
    """Median [q1, q3]; values that were never reached are inf and print as '>' the budget."""
    a = np.array(values, dtype=float)

    def show(q: float) -> str:
        v = float(np.percentile(a, q, method="nearest")) if a.size else math.nan
        if math.isinf(v):
            return f">{budget_label}" if budget_label else "never"
        return f"{v:.3g}"

    return f"{show(50)} [{show(25)}, {show(75)}]"


def summarise(runs: list[dict[str, Any]], budget: int) -> dict[tuple[str, int, str], dict[str, Any]]:
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[(run["scenario"], run["synthesisers"], run["method"])].append(run)
    table = {}
    for key, group in groups.items():
        tolerance = group[0].get("tolerance", 0.01 * abs(group[0]["optimum"]))
        n_to, h_to = [], []
        for run in group:
            i = _first_within(run["regret"], tolerance)
            n_to.append(math.inf if i is None else i + 1)
            h_to.append(math.inf if i is None else run["hours"][i])
        regret_at = {c: [r["regret"][c - 1] for r in group if len(r["regret"]) >= c] for c in CHECKPOINTS}
        model = [m for r in group for m in r["model_made"]]
        table[key] = {
            "runs": len(group),
            "n_to": n_to,
            "h_to": h_to,
            "reached": sum(math.isfinite(n) for n in n_to),
            "regret_at": regret_at,
            "model_share": sum(model) / max(len(model), 1),
            "max_pending": max(
                (n for r in group for n, m in zip(r["pending"], r["model_made"], strict=True) if m), default=0
            ),
            "failed": sum(r["failed"] for r in group),
            "wall_s": float(np.median([r["wall_s"] for r in group])),
        }
    return table


def print_tables(runs: list[dict[str, Any]], budget: int) -> None:
    table = summarise(runs, budget)
    scenarios = sorted({k[0] for k in table})
    for scenario in scenarios:
        first = next(r for r in runs if r["scenario"] == scenario)
        optimum, tolerance = first["optimum"], first.get("tolerance", 0.01 * abs(first["optimum"]))
        print(f"\n## {scenario}: true optimum {optimum:.4g}, 1 % tolerance {tolerance:.3g}, budget {budget}")
        head = f"{'synth':>5} {'method':<9} {'runs':>4} {'n to 1 %':>18} {'lab h to 1 %':>20} {'reached':>7}"
        head += "".join(f" {'regret@' + str(c):>20}" for c in CHECKPOINTS)
        print(head + f" {'model %':>7} {'pend':>4} {'s/run':>6}")
        print("(pend: most experiments pending when the model proposed; lab h: simulated hours, see the module doc)")
        keys = sorted((k for k in table if k[0] == scenario), key=lambda k: (k[1], k[2] != "botorch", k[2]))
        for key in keys:
            row = table[key]
            _, synthesisers, method = key
            line = f"{synthesisers or '-':>5} {method:<9} {row['runs']:>4} {_quartiles(row['n_to'], str(budget)):>18}"
            hours = "-" if method == "ask/tell" else _quartiles(row["h_to"], "")
            line += f" {hours:>20} {row['reached']:>3}/{row['runs']:<3}"
            for c in CHECKPOINTS:
                line += f" {_quartiles(row['regret_at'][c], '') if row['regret_at'][c] else '-':>20}"
            line += f" {100 * row['model_share']:>6.0f}% {row['max_pending']:>4} {row['wall_s']:>6.0f}"
            print(line)
        print()
        for synthesisers in sorted({k[1] for k in keys if k[1]}):
            bo = table.get((scenario, synthesisers, "botorch"))
            sobol = table.get((scenario, synthesisers, "sobol"))
            if bo is None or sobol is None:
                continue
            bo_n, sobol_n = float(np.median(bo["n_to"])), float(np.median(sobol["n_to"]))
            if math.isinf(bo_n):
                verdict = "no: BoTorch's median does not reach 1 %"
            elif math.isinf(sobol_n):
                verdict = "yes: Sobol's median does not reach 1 % within the budget"
            else:
                verdict = f"{'yes' if bo_n <= sobol_n / 2 else 'no'}: ratio Sobol/BoTorch x{sobol_n / bo_n:.2f}"
            print(f"{synthesisers} synthesiser(s): BoTorch needs at most half Sobol's experiments to 1 %? {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--synthesisers", default="1,2,4")
    ap.add_argument("--methods", default="botorch,sobol,random")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--time-factor",
        type=float,
        default=0.0,
        help="the simulated lab's time factor: 0 runs instruments instantly (the demo's setting); e.g. 2e-4 makes "
        "a 10 h anneal take 7 s, so with several synthesisers the experiments pending at each proposal are those a "
        "lab of slow furnaces would have",
    )
    ap.add_argument("--no-ask-tell", action="store_true", help="skip the planner's own ask/tell runs")
    ap.add_argument("--log", default="bench/out/campaign.jsonl", help="each finished run is appended here")
    ap.add_argument("--report", default="", help="print the tables of a --log file, then stop")
    args = ap.parse_args()

    from threadpoolctl import threadpool_info

    kernels = "; ".join(f"{i['internal_api']} {i.get('architecture') or ''}".strip() for i in threadpool_info())
    blas_env = ", ".join(f"{k}={os.environ.get(k)}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))
    print(f"# BLAS: {kernels}; {blas_env}; workers={args.workers}")
    if args.report:
        runs = [json.loads(line) for line in Path(args.report).read_text().splitlines() if line.strip()]
        print(f"# campaign bench: {len(runs)} runs from {args.report}")
        print_tables(runs, args.budget)
        return
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = []
    for scenario in args.scenarios.split(","):
        for synthesisers in (int(n) for n in args.synthesisers.split(",")):
            for seed in seeds:
                for method in args.methods.split(","):
                    jobs.append((scenario, synthesisers, method, seed, args.budget, args.time_factor))
        if not args.no_ask_tell and SCENARIOS[scenario]["planner_problem"]:
            jobs += [(scenario, 0, "ask/tell", seed, args.budget, 0.0) for seed in seeds]
    jobs.sort(key=lambda job: (job[1] != 1, job[1]))  # one synthesiser first: the acceptance figure
    print(f"# campaign bench: {len(jobs)} runs, seeds {seeds.start}-{seeds.stop - 1}, budget {args.budget}", flush=True)
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    runs = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=context) as pool:
        futures = {pool.submit(_one, job): job for job in jobs}
        for future in as_completed(futures):
            try:
                run = future.result()
            except Exception as error:  # noqa: BLE001 - a run that crashed is reported, the bench goes on
                print(f"# run {futures[future]} failed: {error}", flush=True)
                continue
            runs.append(run)
            with log.open("a") as handle:
                handle.write(json.dumps(run) + "\n")
            print(
                f"# done {run['scenario']} synth={run['synthesisers']} {run['method']} seed={run['seed']}: "
                f"final regret {run['regret'][-1]:.3g}, {run['wall_s']:.0f} s",
                flush=True,
            )
    print_tables(runs, args.budget)


if __name__ == "__main__":
    main()
