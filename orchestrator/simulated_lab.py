"""The ``--sim`` path: start the simulated lab's instrument servers as separate processes, and score against truth.

Each instrument of the campaign file is served by ``python -m sim_lab.serve`` at the address the file gives, so the
campaign talks to the simulated lab over the same ZeroMQ protocol it would use with hardware. This module is the
only place outside tests that knows the simulated lab exists.
"""

from __future__ import annotations

import ctypes
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from orchestrator.spec import CampaignSpec, InstrumentSpec

__all__ = ["SimulatedLab", "SimulatedLabError", "check_simulation", "truth_scores"]


class SimulatedLabError(RuntimeError):
    """The simulated lab could not be started."""


def check_simulation(spec: CampaignSpec) -> None:
    """Check that the simulated lab can serve ``spec``, before any process starts: it has a ``simulation:``
    section whose scenario the simulated lab knows, and the campaign varies exactly that scenario's conditions
    within their ranges (otherwise every experiment would fail).

    Raises:
        SimulatedLabError: naming the campaign, the field and the problem.
    """
    where = f"campaign {spec.name!r}"
    if spec.simulation is None:
        raise SimulatedLabError(f"{where} has no `simulation:` section to run with --sim")
    from sim_lab.scenarios import SCENARIOS

    name = spec.simulation.scenario
    if name not in SCENARIOS:
        raise SimulatedLabError(
            f"{where}: simulation.scenario: unknown scenario {name!r}; known scenarios: {', '.join(sorted(SCENARIOS))}"
        )
    truth = {p.name: p for p in SCENARIOS[name].parameters}
    given = {p.name: p for p in spec.parameters}
    unknown = sorted(set(given) - set(truth))
    missing = sorted(set(truth) - set(given))
    if unknown or missing:
        raise SimulatedLabError(
            f"{where}: parameters: scenario {name!r} takes {', '.join(sorted(truth))}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )
    from sim_lab.serve import INSTRUMENTS

    unserved = sorted({i.kind for i in spec.instruments.values()} - set(INSTRUMENTS))
    if unserved:
        raise SimulatedLabError(
            f"{where}: instruments: the simulated lab has no {', '.join(unserved)}; it simulates "
            f"{', '.join(INSTRUMENTS)}"
        )
    for parameter in spec.parameters:
        real = truth[parameter.name]
        if parameter.kind == "categorical" or parameter.low is None or parameter.high is None:
            continue
        if parameter.low < real.low or parameter.high > real.high:
            raise SimulatedLabError(
                f"{where}: parameters: {parameter.name} spans [{parameter.low:g}, {parameter.high:g}], beyond what "
                f"scenario {name!r} can make: [{real.low:g}, {real.high:g}] {real.unit}"
            )


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """In the forked child: ask Linux to SIGKILL it when the thread that started it exits (``kill -9`` of the
    campaign included), so a simulated instrument never outlives its lab and holds its port. SIGKILL, not SIGTERM:
    a server busy in a job may take long to shut down gracefully, and it has nothing to save (the sample tray is
    written atomically). It only calls into libc (no import, no lock), as code between fork and exec must."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class SimulatedLab:
    """Instrument server processes for every instrument of ``spec``; a context manager that stops them."""

    def __init__(self, spec: CampaignSpec, tray_dir: Path, startup_timeout_s: float = 60.0) -> None:
        check_simulation(spec)  # one clear error for an unknown scenario, before any process starts
        self.spec = spec
        self.tray_dir = Path(tray_dir)
        self.startup_timeout_s = startup_timeout_s
        self.processes: dict[str, subprocess.Popen[str]] = {}
        self.restarts: dict[str, int] = {}
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None

    def command(self, instrument: str) -> list[str]:
        sim = self.spec.simulation
        assert sim is not None
        spec = self.spec.instruments[instrument]
        return (
            [
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
            + (["--faults", sim.faults.model_dump_json()] if sim.faults.enabled else [])
            + self._key_arguments(spec)
        )

    def _key_arguments(self, instrument: InstrumentSpec) -> list[str]:
        """CurveZMQ for a simulated instrument with a ``server_key``: its secret is the ``.key_secret`` beside the
        public key (as ``crucible keys`` writes them), and the campaign's client key may control it."""
        if instrument.server_key is None or self.spec.client_key is None:
            return []
        client_public = self.spec.client_key.removesuffix("_secret")
        return ["--secret-key", instrument.server_key + "_secret", "--controller-key", client_public]

    def log_path(self, instrument: str) -> Path:
        """The file where ``instrument``'s server appends its log (one line per job start and end)."""
        return self.tray_dir / "logs" / f"{quote(instrument, safe='')}.log"

    def start(self) -> SimulatedLab:
        self.tray_dir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        launched = {name: self._spawn(name) for name in self.spec.instruments}  # all start importing at once
        for name, process in launched.items():
            self.processes[name] = process
        for name, process in launched.items():
            self._await_serving(name, process)
        self._watchdog = threading.Thread(target=self._watch, name="sim-lab-watchdog", daemon=True)
        self._watchdog.start()
        return self

    def _spawn(self, name: str) -> subprocess.Popen[str]:
        log = self.log_path(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as stderr:  # the child keeps its own descriptor
            return subprocess.Popen(
                [*self.command(name), "--log-file", str(log)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                preexec_fn=_die_with_parent,
            )

    def _await_serving(self, name: str, process: subprocess.Popen[str]) -> None:
        """Wait until the server says it is serving; else stop the lab and say why it did not start."""
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], self.startup_timeout_s)
        line = process.stdout.readline() if ready else ""  # "serving <kind> at <address>" once bound
        if line.startswith("serving"):
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        self.stop()
        lines = [
            line for line in self.log_path(name).read_text(encoding="utf-8", errors="replace").splitlines()
            if line.strip()
        ]
        reason = lines[-1] if lines else f"no answer within {self.startup_timeout_s:g} s"
        raise SimulatedLabError(f"simulated instrument {name!r} did not start: {reason} (log: {self.log_path(name)})")

    def _launch(self, name: str) -> subprocess.Popen[str]:
        """Start one instrument server and wait until it says it is serving."""
        process = self._spawn(name)
        self._await_serving(name, process)
        return process

    def _watch(self) -> None:
        """Restart an instrument whose process died, as a lab's watchdog (or its operator) would."""
        while not self._stopping.wait(0.2):
            for name, process in list(self.processes.items()):
                if process.poll() is not None and not self._stopping.is_set():
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    try:
                        self.processes[name] = self._launch(name)
                    except SimulatedLabError:
                        return

    def stop(self) -> None:
        self._stopping.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join()
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
        the conditions of the true constrained optimum, and the optimum's objective value. For a ``target``
        objective the value is ``−|y − target|`` and the optimum 0 where the target is reachable (its conditions
        then left empty: many reach it).
    """
    from sim_lab.scenarios import get_scenario
    from sim_lab.scoring import score, true_optimum

    assert spec.simulation is not None
    scenario = get_scenario(spec.simulation.scenario)
    objective = spec.objectives[0]

    truth = spec.simulation.truth

    def truth_name(name: str) -> str:
        named = truth.get(name, name.rsplit(".", 1)[-1])
        return named if isinstance(named, str) else named.name

    constraints = []
    for c in spec.constraints:
        named = truth.get(c.name)
        true = named if named is not None and not isinstance(named, str) else None
        constraints.append((true.name, true.op, true.value) if true else (truth_name(c.name), c.op, c.value))
    objective_name = truth_name(objective.name)
    names = {p.name for p in spec.parameters}
    if objective.direction == "target":
        # the truth's best is the feasible value nearest the target, its score −|y − target| (0 when reachable)
        assert objective.target is not None
        target = objective.target
        low_at, low = true_optimum(scenario, objective_name, "minimize", constraints)
        high_at, high = true_optimum(scenario, objective_name, "maximize", constraints)
        best_conditions = low_at if target < low else high_at if target > high else {}
        best_value = -max(low - target, target - high, 0.0)
    else:
        best_conditions, best_value = true_optimum(scenario, objective_name, objective.direction, constraints)
    values = []
    for point in conditions:
        made = {k: v for k, v in point.items() if k in names}  # not how it was measured (a chosen scan)
        direction = "maximize" if objective.direction == "target" else objective.direction
        value, feasible = score(scenario, made, objective_name, direction, constraints)
        if objective.direction == "target":
            value = -abs(value - objective.target)  # type: ignore[operator]
        values.append(value if feasible else float("nan"))
    return values, best_conditions, best_value
