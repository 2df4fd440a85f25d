"""Orchestration benchmark: a long campaign on simulated instruments with realistic durations under a time factor.

For 1, 2 and 4 instruments of each kind it runs the same campaign through the scheduler and real instrument server
processes, then prints instrument utilisation, experiments per simulated hour, and Crucible's own overhead per
experiment (planning, analysis and bookkeeping: time not spent waiting on instruments), side by side with the
ratio to the one-instrument lab.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/orchestration.py --experiments 200
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Hashable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))

from orchestrator.campaign import Campaign  # noqa: E402
from orchestrator.lab import Lab  # noqa: E402
from orchestrator.scheduler import ANALYSE, Action, Scheduler, ThreadExecutor  # noqa: E402
from orchestrator.simulated_lab import SimulatedLab  # noqa: E402
from orchestrator.spec import parse_campaign  # noqa: E402
from orchestrator.store import Store  # noqa: E402
from tests.conftest import example_campaign, free_tcp_address  # noqa: E402


class TimedExecutor(ThreadExecutor):
    """A thread executor that records the wall time of every step and of planning."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers)
        self.lock = threading.Lock()
        self.plan_s = 0.0
        self.step_s: dict[str, list[float]] = defaultdict(list)
        self.busy_s: dict[str, float] = defaultdict(float)

    def plan(self, campaign: Campaign, n: int) -> list[str]:
        start = time.perf_counter()
        try:
            return super().plan(campaign, n)
        finally:
            self.plan_s += time.perf_counter() - start

    def submit(self, campaign: Campaign, action: Action, experiment_id: str, instrument: str | None) -> Hashable:
        step = ANALYSE if action.kind == ANALYSE else action.step_name

        def timed() -> None:
            start = time.perf_counter()
            try:
                if action.kind == ANALYSE:
                    campaign.analyse(experiment_id, action.step)
                else:
                    campaign.run_step(experiment_id, action.step, instrument)
            finally:
                elapsed = time.perf_counter() - start
                with self.lock:
                    self.step_s[step].append(elapsed)
                    if instrument:
                        self.busy_s[instrument] += elapsed

        return self.pool.submit(timed)


def lab_campaign(n_each: int, experiments: int, time_factor: float, planner: str) -> dict[str, Any]:
    data = example_campaign(
        name=f"bench-{n_each}",
        budget={"experiments": experiments, "batch_size": 1},
        planner={"name": planner, "initial_experiments": 5, "raw_samples": 64, "num_restarts": 2},
    )
    data["instruments"] = {}
    for i in range(n_each):
        data["instruments"][f"furnace-{i}"] = {"kind": "synthesiser", "address": free_tcp_address()}
        data["instruments"][f"xrd-{i}"] = {"kind": "diffractometer", "address": free_tcp_address()}
    data["simulation"]["time_factor"] = time_factor
    return data


def run_once(n_each: int, experiments: int, time_factor: float, planner: str) -> dict[str, float]:
    spec = parse_campaign(lab_campaign(n_each, experiments, time_factor, planner))
    with tempfile.TemporaryDirectory() as directory:
        store = Store(f"sqlite:///{Path(directory) / 'bench.db'}")
        with SimulatedLab(spec, Path(directory) / "tray"), Lab.from_spec(spec) as lab:
            campaign = Campaign.open(spec, store, lab)
            executor = TimedExecutor(max_workers=4 * n_each + 2)
            start = time.perf_counter()
            Scheduler(campaign, executor, analysis_slots=n_each).run()
            wall_s = time.perf_counter() - start
            executor.close()
        instrument_s = 0.0  # what the instruments themselves took, from their own reports
        for experiment in campaign.experiments():
            for result in store.step_results(experiment.id):
                reading = result.reading
                duration_s = reading["metadata"]["duration_s"] if reading else result.result["duration_s"]
                instrument_s += duration_s * time_factor
        n = len(campaign.experiments())
        step_wall_s = sum(sum(v) for k, v in executor.step_s.items() if k != ANALYSE)
        analysis_s = sum(executor.step_s[ANALYSE])
        store.close()
    simulated_h = wall_s / time_factor / 3600.0
    synth_busy = [executor.busy_s[f"furnace-{i}"] / wall_s for i in range(n_each)]
    xrd_busy = [executor.busy_s[f"xrd-{i}"] / wall_s for i in range(n_each)]
    return {
        "experiments": n,
        "wall_s": wall_s,
        "simulated_h": simulated_h,
        "per_sim_hour": n / simulated_h,
        "synth_util": sum(synth_busy) / n_each,
        "xrd_util": sum(xrd_busy) / n_each,
        "plan_ms": 1e3 * executor.plan_s / n,
        "analysis_ms": 1e3 * analysis_s / n,
        "bookkeeping_ms": 1e3 * max(step_wall_s - instrument_s, 0.0) / n,
    }


def blas_kernel() -> str:
    try:
        from threadpoolctl import threadpool_info

        return ", ".join(f"{i.get('internal_api')}:{i.get('architecture', '?')}" for i in threadpool_info())
    except ImportError:
        return "threadpoolctl not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--time-factor", type=float, default=2e-5, help="wall seconds per simulated second")
    parser.add_argument("--instruments", default="1,2,4", help="instruments of each kind, comma-separated")
    parser.add_argument("--planner", default="sobol", choices=["sobol", "random", "botorch"])
    args = parser.parse_args()
    print(f"BLAS: {blas_kernel()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"{args.experiments} experiments, time factor {args.time_factor:g}, planner {args.planner}")
    rows = []
    for n_each in [int(n) for n in args.instruments.split(",")]:
        result = run_once(n_each, args.experiments, args.time_factor, args.planner)
        rows.append((n_each, result))
        print(f"  done: {n_each} of each kind in {result['wall_s']:.1f} s", flush=True)
    base = rows[0][1]["per_sim_hour"]
    header = (
        f"{'per kind':>8} {'wall s':>8} {'sim h':>8} {'exp/sim h':>10} {'ratio':>6} {'synth util':>10} "
        f"{'xrd util':>9} {'plan ms':>8} {'analysis ms':>11} {'bookkeeping ms':>14}"
    )
    print(header)
    for n_each, r in rows:
        print(
            f"{n_each:>8} {r['wall_s']:>8.1f} {r['simulated_h']:>8.1f} {r['per_sim_hour']:>10.3f} "
            f"{r['per_sim_hour'] / base:>6.2f} {100 * r['synth_util']:>9.0f}% {100 * r['xrd_util']:>8.0f}% "
            f"{r['plan_ms']:>8.1f} {r['analysis_ms']:>11.1f} {r['bookkeeping_ms']:>14.1f}"
        )


if __name__ == "__main__":
    main()
