"""Phase-mapping benchmark: how much of a composition spread's phase map a campaign knows after N XRD patterns.

Each run is the shipped campaign ``examples/mg_zn_ce_phase_map.yaml`` as ``crucible run --sim`` runs it (simulated
instrument server processes over ZeroMQ, the real scheduler, the real XRD fit of every pattern with three reference
phases), with one planner: BoTorch in explore mode (the file's), Sobol or random picks from the candidate set, or
``grid``, a coarse-to-fine lattice over the wafer (corners, then every 6th, every 3rd point, then the rest in
bit-reversed order), all through the same loop. After 20, 40 and 80 patterns the map is predicted at every one of
the 169 candidate points from the measured ones (each point takes the region, i.e. the set of phases present at
>= 2 wt%, of its nearest measured neighbour) and scored against the truth with the same threshold: the share of
points whose region is right. Beside it: the share of measured points whose region the analysis got right.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -W ignore bench/phase_map.py --seeds 3 --workers 2

The anchor is CAMEO (Kusne et al., Nat. Commun. 2020), which maps a spread from a fraction of its points.
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
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

FILE = ROOT / "examples" / "mg_zn_ce_phase_map.yaml"
CHECKPOINTS = (20, 40, 80)
THRESHOLD = 0.02
TRUE_PHASES = ("rocksalt", "wurtzite", "fluorite")  # in the order of the file's phases: periclase, zincite, ceria


class GridOrder:
    """A planner plug-in that measures the candidate points coarse-to-fine: the lattice corners, then every 6th,
    every 3rd point, then the rest in bit-reversed order (what a scientist mapping by hand might do)."""

    def __init__(self, candidates: Sequence[Mapping[str, Any]], **_: Any) -> None:
        points = [dict(c) for c in candidates]
        xs = sorted({p["wafer_x_mm"] for p in points})
        ys = sorted({p["wafer_y_mm"] for p in points})

        def level(p: Mapping[str, Any]) -> int:
            i, j = xs.index(p["wafer_x_mm"]), ys.index(p["wafer_y_mm"])
            for rank, step in enumerate((12, 6, 3)):
                if i % step == 0 and j % step == 0:
                    return rank
            return 3

        width = max(len(points) - 1, 1).bit_length()
        reversed_index = {k: int(format(k, f"0{width}b")[::-1], 2) for k in range(len(points))}
        order = sorted(range(len(points)), key=lambda k: (level(points[k]), reversed_index[k]))
        self.order = [points[k] for k in order]
        self.told: list[dict[str, Any]] = []

    def tell(self, observations: Sequence[Any]) -> None:
        self.told = [dict(o.conditions) for o in observations]

    def ask(
        self, n: int = 1, pending: Sequence[Mapping[str, Any]] = (), fixed: Mapping[str, Any] | None = None
    ) -> list[Any]:
        from agents.planner.types import Proposal

        used = [*self.told, *(dict(p) for p in pending)]
        fresh = [p for p in self.order if p not in used]
        return [Proposal(conditions=p, strategy="grid") for p in fresh[:n]]


def true_region(scenario: Any, point: Mapping[str, float]) -> int:
    quantities = scenario.quantities(point)
    return sum(2**i for i, phase in enumerate(TRUE_PHASES) if quantities[f"{phase}_fraction"] >= THRESHOLD)


def map_accuracy(measured: list[tuple[float, float, int]], grid: list[tuple[float, float, int]]) -> float:
    """Share of ``grid`` points (x, y, true region) whose nearest ``measured`` point (x, y, region) has their
    region."""
    if not measured:
        return math.nan
    m = np.array([(x, y) for x, y, _ in measured])
    regions = [r for _, _, r in measured]
    right = 0
    for x, y, region in grid:
        nearest = int(np.argmin(np.hypot(m[:, 0] - x, m[:, 1] - y)))
        right += regions[nearest] == region
    return right / len(grid)


def run(method: str, seed: int, budget: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from orchestrator.campaign import Campaign
    from orchestrator.lab import Lab
    from orchestrator.scheduler import Scheduler, ThreadExecutor
    from orchestrator.simulated_lab import SimulatedLab
    from orchestrator.spec import parse_campaign, read_candidates
    from orchestrator.store import Store
    from sim_lab.scenarios import get_scenario
    from tests.conftest import free_tcp_address

    data = yaml.safe_load(FILE.read_text())
    data["name"] = f"bench-map-{method}-{seed}"
    data["seed"] = seed
    data["budget"] = {"experiments": budget}
    data["planner"]["candidates"] = str(ROOT / "examples" / data["planner"]["candidates"])
    data["planner"]["name"] = "bench.phase_map:GridOrder" if method == "grid" else method
    if method != "botorch":
        data["planner"].pop("mode")
    data["simulation"]["seed"] = seed
    for instrument in data["instruments"].values():
        instrument["address"] = free_tcp_address()
    spec = parse_campaign(data)
    scenario = get_scenario(spec.simulation.scenario)  # type: ignore[union-attr]
    candidates = read_candidates(data["planner"]["candidates"])
    grid = [(float(c["wafer_x_mm"]), float(c["wafer_y_mm"]), true_region(scenario, c)) for c in candidates]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        store = Store(f"sqlite:///{directory}/campaign.db")
        with SimulatedLab(spec, Path(directory) / "tray"), Lab.from_spec(spec) as lab:
            campaign = Campaign.open(spec, store, lab)
            executor = ThreadExecutor()
            Scheduler(campaign, executor).run()
            executor.close()
        experiments = campaign.experiments()
        store.close()
    measured = []
    for experiment in experiments:
        if experiment.status != "analysed":
            continue
        c = experiment.conditions
        region = int(experiment.outcomes["xrd.region"]["value"])
        measured.append((float(c["wafer_x_mm"]), float(c["wafer_y_mm"]), region, true_region(scenario, c)))
    accuracy = {n: map_accuracy([(x, y, r) for x, y, r, _ in measured[:n]], grid) for n in CHECKPOINTS if n <= budget}
    return {
        "method": method,
        "seed": seed,
        "accuracy": accuracy,
        "analysis_right": sum(r == t for _, _, r, t in measured) / max(len(measured), 1),
        "analysed": len(measured),
        "regions_true": sorted({r for _, _, r in grid}),
        "wall_s": time.perf_counter() - start,
    }


def _one(job: tuple[str, int, int]) -> dict[str, Any]:
    return run(*job)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", default="botorch,sobol,random,grid")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=80)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--log", default="bench/out/phase_map.jsonl")
    ap.add_argument("--report", default="", help="print the table of a --log file, then stop")
    args = ap.parse_args()
    from threadpoolctl import threadpool_info

    kernels = "; ".join(f"{i['internal_api']} {i.get('architecture') or ''}".strip() for i in threadpool_info())
    blas_env = ", ".join(f"{k}={os.environ.get(k)}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))
    print(f"# BLAS: {kernels}; {blas_env}; workers={args.workers}", flush=True)
    if args.report:
        runs = [json.loads(line) for line in Path(args.report).read_text().splitlines() if line.strip()]
        print(f"# phase-map bench: {len(runs)} runs from {args.report}")
        print_table(runs, args.methods.split(","))
        return
    jobs = [(m, s, args.budget) for s in range(args.seeds) for m in args.methods.split(",")]
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    runs = []
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_one, job): job for job in jobs}
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as error:  # noqa: BLE001 - a crashed run is reported, the bench goes on
                print(f"# run {futures[future]} failed: {error}", flush=True)
                continue
            runs.append(result)
            with log.open("a") as handle:
                handle.write(json.dumps(result) + "\n")
            print(f"# done {result['method']} seed {result['seed']}: {result['accuracy']}, "
                  f"{result['wall_s']:.0f} s", flush=True)
    print_table(runs, args.methods.split(","))


def print_table(runs: list[dict[str, Any]], methods: list[str]) -> None:
    seeds = len({r["seed"] for r in runs})
    print(f"\n## phase map of {FILE.name}: share of the 169 wafer points whose region is right "
          f"(median [min, max] over {seeds} seed(s))")
    head = f"{'method':<8}" + "".join(f" {'after ' + str(n):>20}" for n in CHECKPOINTS)
    print(head + f" {'measured right':>15} {'s/run':>6}")
    for method in methods:
        group = [r for r in runs if r["method"] == method]
        if not group:
            continue
        line = f"{method:<8}"
        for n in CHECKPOINTS:
            values = [r["accuracy"][str(n)] if str(n) in r["accuracy"] else r["accuracy"].get(n) for r in group]
            values = [v for v in values if v is not None]
            line += f" {np.median(values):>8.3f} [{min(values):.2f}, {max(values):.2f}]" if values else f" {'-':>20}"
        right = np.median([r["analysis_right"] for r in group])
        line += f" {right:>15.3f} {np.median([r['wall_s'] for r in group]):>6.0f}"
        print(line)


if __name__ == "__main__":
    main()
