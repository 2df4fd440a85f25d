"""Simulated instrument drivers (synthesiser, powder diffractometer) honouring ``instruments.drivers.Driver``.

Each takes a realistic time (furnace ramp and dwell; step-scan time) multiplied by one ``time_factor``: 0 runs
instantly, 1e-3 turns an hour into 3.6 s. Samples travel between them on a shared :class:`SampleTray`.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from instruments.drivers import DIFFRACTOMETER, SYNTHESISER, JobContext
from instruments.errors import JobAborted
from sim_lab.scenarios import Scenario, get_scenario
from sim_lab.tray import SampleTray
from sim_lab.xrd import PowderDiffractometer

__all__ = ["SimulatedSynthesiser", "SimulatedDiffractometer", "sample_rng"]

_TICK_S = 0.05
_ROOM_TEMPERATURE_C = 25.0


def sample_rng(seed: int, sample_id: str) -> np.random.Generator:
    """A generator determined by ``(seed, sample_id)`` alone (stable across processes and Python versions)."""
    digest = int.from_bytes(hashlib.sha256(sample_id.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([int(seed), digest])


def _check_params(params: Mapping[str, Any], required: set[str], optional: set[str]) -> None:
    unknown = sorted(set(params) - required - optional)
    if unknown:
        raise ValueError(f"unknown run parameter(s) {unknown}; allowed: {sorted(required | optional)}")
    missing = sorted(required - set(params))
    if missing:
        raise ValueError(f"missing run parameter(s) {missing}")


def _sample_id(params: Mapping[str, Any]) -> str:
    sample_id = params["sample_id"]
    if not isinstance(sample_id, str) or not sample_id:
        raise ValueError(f"sample_id must be a non-empty string, got {sample_id!r}")
    return sample_id


class _Clock:
    """Waits a scaled duration in small ticks, reporting progress and stopping promptly on abort."""

    def __init__(self) -> None:
        self.abort_requested = threading.Event()

    def wait(self, duration_s: float, time_factor: float, job: JobContext, what: str) -> None:
        wall_s = duration_s * time_factor
        start = time.monotonic()
        reported = -1
        while True:
            if job.aborted or self.abort_requested.is_set():
                raise JobAborted(job.job_id, f"{what} aborted")
            elapsed = time.monotonic() - start
            fraction = 1.0 if wall_s <= 0 else min(elapsed / wall_s, 1.0)
            step = int(fraction * 20)
            if step > reported:
                reported = step
                job.progress(fraction, what)
            if fraction >= 1.0:
                return
            time.sleep(min(_TICK_S, wall_s - elapsed))


class SimulatedSynthesiser:
    """A furnace that anneals a precursor at the requested conditions and puts the sample on the tray.

    Run parameters: ``{"sample_id": str, "conditions": {parameter name: value}}``; result
    ``{"sample_id", "conditions", "duration_s"}``. The realistic duration is a ramp up at
    ``ramp_c_per_min`` from 25 °C, the dwell (``anneal_time_h`` when the scenario has it) and an equal ramp
    down. The sample reaches the tray only when the run completes; an aborted run leaves no sample.
    """

    kind = SYNTHESISER

    def __init__(
        self,
        scenario: Scenario,
        tray: SampleTray,
        time_factor: float = 0.0,
        seed: int = 0,
        name: str = "sim-synthesiser",
        ramp_c_per_min: float = 10.0,
    ) -> None:
        if not (math.isfinite(time_factor) and time_factor >= 0):
            raise ValueError(f"time_factor must be a non-negative number, got {time_factor}")
        self.scenario = scenario
        self.tray = tray
        self.time_factor = time_factor
        self.seed = seed
        self.name = name
        self.ramp_c_per_min = ramp_c_per_min
        self._clock = _Clock()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "model": "Crucible simulated box furnace",
            "serial_number": f"SIM-FURNACE-{self.seed}",
            "scenario": self.scenario.name,
            "parameters": {
                "sample_id": {"type": "str"},
                "conditions": {p.name: p.as_dict() for p in self.scenario.parameters},
            },
        }

    def duration_s(self, conditions: Mapping[str, float]) -> float:
        """Realistic furnace time in seconds: ramp up, dwell, ramp down."""
        temperature_c = float(conditions.get("anneal_temperature_c", _ROOM_TEMPERATURE_C))
        ramp_s = max(temperature_c - _ROOM_TEMPERATURE_C, 0.0) / self.ramp_c_per_min * 60.0
        dwell_s = float(conditions.get("anneal_time_h", 0.0)) * 3600.0
        return 2.0 * ramp_s + dwell_s

    def run(self, params: dict[str, Any], job: JobContext) -> dict[str, Any]:
        self._clock.abort_requested.clear()
        _check_params(params, {"sample_id", "conditions"}, set())
        sample_id = _sample_id(params)
        if not isinstance(params["conditions"], Mapping):
            raise ValueError(f"conditions must be a mapping of parameter name to value, got {params['conditions']!r}")
        conditions = self.scenario.validate(params["conditions"])
        duration_s = self.duration_s(conditions)
        self._clock.wait(duration_s, self.time_factor, job, f"annealing {sample_id}")
        self.tray.put(sample_id, self.scenario.name, conditions)
        return {"sample_id": sample_id, "conditions": conditions, "duration_s": duration_s}

    def abort(self) -> None:
        self._clock.abort_requested.set()


class SimulatedDiffractometer:
    """A powder diffractometer that measures samples from the tray against their hidden truth.

    Run parameters: ``{"sample_id": str, "counting_time_s": float = 1.0}`` (seconds per step); result
    ``{"reading": Diffractogram.as_dict()}``. Counting noise is drawn from :func:`sample_rng` of
    ``(seed, sample_id)``, so measuring the same sample again gives the same pattern. The realistic duration
    is ``overhead_s`` (loading, alignment) plus the number of steps times the counting time.
    """

    kind = DIFFRACTOMETER
    max_counting_time_s = 100.0

    def __init__(
        self,
        scenario: Scenario,
        tray: SampleTray,
        diffractometer: PowderDiffractometer | None = None,
        time_factor: float = 0.0,
        seed: int = 0,
        name: str = "sim-xrd",
        overhead_s: float = 60.0,
    ) -> None:
        if not (math.isfinite(time_factor) and time_factor >= 0):
            raise ValueError(f"time_factor must be a non-negative number, got {time_factor}")
        self.scenario = scenario
        self.tray = tray
        self.diffractometer = diffractometer if diffractometer is not None else PowderDiffractometer()
        self.time_factor = time_factor
        self.seed = seed
        self.name = name
        self.overhead_s = overhead_s
        self.zero_shift_drift_deg = 0.0
        self._clock = _Clock()

    def describe(self) -> dict[str, Any]:
        d = self.diffractometer
        return {
            "name": self.name,
            "kind": self.kind,
            "model": "Crucible simulated Bragg-Brentano powder diffractometer",
            "serial_number": f"SIM-XRD-{self.seed}",
            "parameters": {
                "sample_id": {"type": "str"},
                "counting_time_s": {
                    "type": "float",
                    "unit": "s",
                    "default": 1.0,
                    "low": 0.0,
                    "high": self.max_counting_time_s,
                },
            },
            "wavelength_angstrom": d.wavelength_angstrom,
            "wavelength_ka2_angstrom": d.wavelength_ka2_angstrom,
            "ka2_ratio": d.ka2_ratio,
            "two_theta_min_deg": d.two_theta_min_deg,
            "two_theta_max_deg": d.two_theta_max_deg,
            "step_deg": d.step_deg,
            "calibration": d.calibration(),
        }

    def duration_s(self, counting_time_s: float) -> float:
        """Realistic scan time in seconds."""
        return self.overhead_s + self.diffractometer.two_theta_deg.size * counting_time_s

    def _scenario_for(self, scenario_name: str) -> Scenario:
        return self.scenario if scenario_name == self.scenario.name else get_scenario(scenario_name)

    def run(self, params: dict[str, Any], job: JobContext) -> dict[str, Any]:
        self._clock.abort_requested.clear()
        _check_params(params, {"sample_id"}, {"counting_time_s"})
        sample_id = _sample_id(params)
        counting_time_s = params.get("counting_time_s", 1.0)
        if isinstance(counting_time_s, bool) or not isinstance(counting_time_s, int | float):
            raise ValueError(f"counting_time_s must be a number of seconds, got {counting_time_s!r}")
        counting_time_s = float(counting_time_s)
        if not (math.isfinite(counting_time_s) and 0 < counting_time_s <= self.max_counting_time_s):
            raise ValueError(f"counting_time_s must be in (0, {self.max_counting_time_s}] s, got {counting_time_s}")
        sample = self.tray.get(sample_id)
        truth = self._scenario_for(sample.scenario_name).truth(sample.conditions)
        duration_s = self.duration_s(counting_time_s)
        self._clock.wait(duration_s, self.time_factor, job, f"scanning {sample_id}")
        instrument = self.diffractometer
        if self.zero_shift_drift_deg:
            # Drift moves the real zero shift; the reported calibration stays the nominal one.
            instrument = replace(instrument, zero_shift_deg=instrument.zero_shift_deg + self.zero_shift_drift_deg)
        reading = instrument.measure(
            truth.phases, counting_time_s, sample_rng(self.seed, sample_id), sample_id=sample_id
        )
        reading.metadata["calibration"] = self.diffractometer.calibration()
        reading.metadata["instrument"] = self.name
        reading.metadata["duration_s"] = duration_s
        return {"reading": reading.as_dict()}

    def abort(self) -> None:
        self._clock.abort_requested.set()
