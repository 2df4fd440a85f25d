"""The ``--sim`` path: start the simulated lab's instrument servers as separate processes, and score against truth.

Each instrument of the campaign file is served by ``python -m sim_lab.serve`` at the address the file gives, so the
campaign talks to the simulated lab over the same ZeroMQ protocol it would use with hardware. This module is the
only place outside tests that knows the simulated lab exists.
"""

from __future__ import annotations

import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.spec import CampaignSpec

__all__ = ["SimulatedLab", "SimulatedLabError", "truth_scores"]


class SimulatedLabError(RuntimeError):
    """The simulated lab could not be started."""


class SimulatedLab:
    """Instrument server processes for every instrument of ``spec``; a context manager that stops them."""

    def __init__(self, spec: CampaignSpec, tray_dir: Path, startup_timeout_s: float = 60.0) -> None:
        if spec.simulation is None:
            raise SimulatedLabError(f"campaign {spec.name!r} has no `simulation:` section to run with --sim")
        self.spec = spec
        self.tray_dir = Path(tray_dir)
        self.startup_timeout_s = startup_timeout_s
        self.processes: dict[str, subprocess.Popen[str]] = {}

    def command(self, instrument: str) -> list[str]:
        sim = self.spec.simulation
        assert sim is not None
        spec = self.spec.instruments[instrument]
        return [
            sys.executable,
            "-m",
            "sim_lab.serve",
            "--instrument",
            spec.kind,
            "--scenario",
            sim.scenario,
            "--address",
            spec.address,
            "--tray",
            str(self.tray_dir),
            "--seed",
            str(sim.seed),
            "--time-factor",
            str(sim.time_factor),
            "--name",
            instrument,
        ]

    def start(self) -> SimulatedLab:
        self.tray_dir.mkdir(parents=True, exist_ok=True)
        for name in self.spec.instruments:
            self.processes[name] = subprocess.Popen(
                self.command(name), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        deadline = time.monotonic() + self.startup_timeout_s
        for name, process in self.processes.items():
            assert process.stdout is not None and process.stderr is not None
            ready, _, _ = select.select([process.stdout], [], [], max(deadline - time.monotonic(), 0.0))
            line = process.stdout.readline() if ready else ""  # "serving <kind> at <address>" once bound
            if not line.startswith("serving"):
                if process.poll() is None:
                    process.kill()
                error = process.stderr.read().strip().splitlines()
                self.stop()
                reason = error[-1] if error else f"no answer within {self.startup_timeout_s:g} s"
                raise SimulatedLabError(f"simulated instrument {name!r} did not start: {reason}")
        return self

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def __enter__(self) -> SimulatedLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def truth_scores(spec: CampaignSpec, conditions: list[dict[str, Any]]) -> tuple[list[float], dict[str, Any], float]:
    """Score conditions against the simulated scenario's ground truth.

    Returns:
        The true objective value at each of ``conditions`` (NaN where a true constraint is violated),
        the conditions of the true constrained optimum, and the optimum's objective value.
    """
    from sim_lab.scenarios import get_scenario
    from sim_lab.scoring import score, true_optimum

    assert spec.simulation is not None
    scenario = get_scenario(spec.simulation.scenario)
    objective = spec.objectives[0]
    if objective.direction == "target":
        raise SimulatedLabError("scoring against truth supports maximize/minimize objectives")
    constraints = [(c.name, c.op, c.value) for c in spec.constraints]
    best_conditions, best_value = true_optimum(scenario, objective.name, objective.direction, constraints)
    values = []
    for point in conditions:
        value, feasible = score(scenario, point, objective.name, objective.direction, constraints)
        values.append(value if feasible else float("nan"))
    return values, best_conditions, best_value
