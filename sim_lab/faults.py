"""Faults on demand: a driver wrapper that makes a simulated instrument misbehave the way real ones do.

Each run draws, with the probabilities of a :class:`FaultConfig`, at most one of

- **death**: the server process exits mid-run (``os._exit``), as after a crash or power cut;
- **timeout**: the run hangs for ``hang_s`` wall seconds (abortable), so the client's wait times out;
- **error**: the run fails with an instrument error (the server replies with a failed job);

and, independently, for readings,

- **corruption**: a block of the signal turns to nulls, a few points spike 10–100× above the maximum, or the
  signal array loses points so that its length no longer matches the abscissa (``from_dict`` raises);
- **truncation**: the scan stops early and every array is cut to 30–90 % of its points;
- **drift**: the diffractometer's zero shift takes a random ±``drift_step_deg`` step (a slow random walk that the
  reported calibration does not show).

Draws come from ``(seed, instrument name, run counter)``; with a ``state_path`` the counter and the drift survive
a restart of the process, so a campaign's faults are reproducible and a restarted instrument does not die again
on the same draw.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from instruments.drivers import Driver, JobContext
from instruments.errors import JobAborted

__all__ = ["FaultConfig", "FaultyDriver", "SimulatedInstrumentError", "DEATH_EXIT_CODE"]

logger = logging.getLogger(__name__)

DEATH_EXIT_CODE = 75
_DEATH_DELAY_S = 0.1
_ARRAYS: dict[str, tuple[str, ...]] = {
    "diffractogram": ("two_theta_deg", "counts"),
    "scattering_curve": ("q_inv_angstrom", "intensity", "sigma"),
    "pair_distribution": ("r_angstrom", "g_r"),
    "spectrum": ("energy_ev", "absorption"),
}
_ERRORS = (
    "detector high voltage tripped",
    "sample stage did not reach position",
    "shutter interlock open",
    "X-ray generator fault",
    "thermocouple reading out of range",
)


class SimulatedInstrumentError(RuntimeError):
    """An injected instrument failure."""


@dataclass(frozen=True)
class FaultConfig:
    """Per-run probabilities of each fault, plus their sizes.

    Attributes:
        timeout_probability: the run hangs for ``hang_s`` wall seconds, then fails.
        death_probability: the server process exits mid-run with ``DEATH_EXIT_CODE``.
        error_probability: the run fails with a :class:`SimulatedInstrumentError`.
        corruption_probability: the reading's signal is corrupted (nulls, spikes or a length mismatch).
        truncation_probability: the reading is cut short.
        drift_probability: the diffractometer's zero shift steps by ±``drift_step_deg``.
        drift_step_deg: size of one drift step, degrees 2θ.
        hang_s: how long a hanging run blocks, in wall seconds.
    """

    timeout_probability: float = 0.0
    death_probability: float = 0.0
    error_probability: float = 0.0
    corruption_probability: float = 0.0
    truncation_probability: float = 0.0
    drift_probability: float = 0.0
    drift_step_deg: float = 0.01
    hang_s: float = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_probability") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} must be in [0, 1], got {value}")
        if self.timeout_probability + self.death_probability + self.error_probability > 1.0:
            raise ValueError("timeout, death and error probabilities must sum to at most 1 (one per run)")
        if self.hang_s < 0 or self.drift_step_deg < 0:
            raise ValueError("hang_s and drift_step_deg must be non-negative")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultConfig:
        """Build from a plain mapping (e.g. a campaign file), refusing unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in data.items()})

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f.name) > 0 for f in fields(self) if f.name.endswith("_probability"))


def _exit_process() -> None:
    print("simulated fault: instrument process dies", file=sys.stderr, flush=True)
    os._exit(DEATH_EXIT_CODE)


class FaultyDriver:
    """Wraps a driver and injects faults into its runs; otherwise behaves exactly like the driver.

    Args:
        driver: the simulated driver to wrap. A driver with a ``zero_shift_drift_deg`` attribute drifts.
        config: the fault probabilities.
        seed: seed of the fault draws.
        state_path: optional JSON file keeping the run counter and drift across process restarts.
        on_death: called for a death fault (default: print to stderr and ``os._exit(DEATH_EXIT_CODE)``); if
            it returns, the run fails with :class:`SimulatedInstrumentError`.
    """

    def __init__(
        self,
        driver: Driver,
        config: FaultConfig,
        seed: int = 0,
        state_path: str | os.PathLike[str] | None = None,
        on_death: Callable[[], None] = _exit_process,
    ) -> None:
        self.driver = driver
        self.kind = driver.kind
        self.config = config
        self.seed = int(seed)
        self.state_path = Path(state_path) if state_path is not None else None
        self.on_death = on_death
        self.injected: list[dict[str, Any]] = []
        self._abort = threading.Event()
        self._lock = threading.Lock()
        self._name_key = int.from_bytes(
            hashlib.sha256(str(driver.describe().get("name", driver.kind)).encode()).digest()[:8], "little"
        )
        self._draws = 0
        if self.state_path is not None and self.state_path.exists():
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            self._draws = int(state.get("draws", 0))
            if hasattr(driver, "zero_shift_drift_deg"):
                driver.zero_shift_drift_deg = float(state.get("zero_shift_drift_deg", 0.0))

    def describe(self) -> dict[str, Any]:
        return self.driver.describe()

    def abort(self) -> None:
        self._abort.set()
        self.driver.abort()

    def _next_rng(self) -> np.random.Generator:
        with self._lock:
            draw = self._draws
            self._draws += 1
            self._save()
        return np.random.default_rng([self.seed, self._name_key, draw])

    def _save(self) -> None:
        if self.state_path is None:
            return
        state = {"draws": self._draws, "zero_shift_drift_deg": getattr(self.driver, "zero_shift_drift_deg", 0.0)}
        fd, temporary = tempfile.mkstemp(dir=self.state_path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
        os.replace(temporary, self.state_path)

    def _note(self, job: JobContext, fault: str, **details: Any) -> None:
        record = {"job_id": job.job_id, "fault": fault, **details}
        self.injected.append(record)
        logger.warning("injecting fault %s", record)

    def run(self, params: dict[str, Any], job: JobContext) -> dict[str, Any]:
        self._abort.clear()
        c = self.config
        rng = self._next_rng()
        u_drift, u_fail, u_corrupt, u_truncate = rng.random(4)
        if u_drift < c.drift_probability and hasattr(self.driver, "zero_shift_drift_deg"):
            step = float(rng.choice([-1.0, 1.0])) * c.drift_step_deg
            with self._lock:
                self.driver.zero_shift_drift_deg += step
                self._save()
            self._note(job, "drift", step_deg=step, zero_shift_drift_deg=self.driver.zero_shift_drift_deg)
        if u_fail < c.death_probability:
            self._note(job, "death")
            time.sleep(_DEATH_DELAY_S)  # die mid-run, after the server has acknowledged the job
            self.on_death()
            raise SimulatedInstrumentError("instrument process died")
        elif u_fail < c.death_probability + c.timeout_probability:
            self._note(job, "timeout", hang_s=c.hang_s)
            self._hang(job)
        elif u_fail < c.death_probability + c.timeout_probability + c.error_probability:
            message = str(rng.choice(_ERRORS))
            self._note(job, "error", message=message)
            raise SimulatedInstrumentError(message)
        result = self.driver.run(params, job)
        reading = result.get("reading")
        if isinstance(reading, dict) and reading.get("kind") in _ARRAYS:
            if u_truncate < c.truncation_probability:
                keep = float(rng.uniform(0.3, 0.9))
                self._note(job, "truncation", keep_fraction=keep)
                reading = _truncate(reading, keep)
            if u_corrupt < c.corruption_probability:
                how = str(rng.choice(["nulls", "spikes", "length_mismatch"]))
                self._note(job, "corruption", how=how)
                reading = _corrupt(reading, how, rng)
            result = {**result, "reading": reading}
        return result

    def _hang(self, job: JobContext) -> None:
        deadline = time.monotonic() + self.config.hang_s
        while time.monotonic() < deadline:
            if job.aborted or self._abort.is_set():
                raise JobAborted(job.job_id, "hung run aborted")
            time.sleep(0.02)
        raise SimulatedInstrumentError(f"instrument stopped responding for {self.config.hang_s} s")


def _truncate(reading: dict[str, Any], keep_fraction: float) -> dict[str, Any]:
    out = dict(reading)
    names = _ARRAYS[reading["kind"]]
    n = max(2, int(len(reading[names[0]]) * keep_fraction))
    for name in names:
        out[name] = list(reading[name][:n])
    return out


def _corrupt(reading: dict[str, Any], how: str, rng: np.random.Generator) -> dict[str, Any]:
    out = dict(reading)
    signal_name = _ARRAYS[reading["kind"]][1]
    signal = list(reading[signal_name])
    n = len(signal)
    if how == "nulls":
        width = max(1, int(n * rng.uniform(0.01, 0.05)))
        start = int(rng.integers(0, max(1, n - width)))
        signal[start : start + width] = [None] * len(signal[start : start + width])
    elif how == "spikes":  # detector glitches: a few points far above anything real
        ceiling = max((abs(v) for v in signal if v is not None), default=1.0)
        for i in rng.choice(n, size=min(n, int(rng.integers(1, 6))), replace=False):
            signal[int(i)] = float(ceiling * rng.uniform(10.0, 100.0))
    else:
        signal = signal[: max(0, n - int(rng.integers(1, 10)))]
    out[signal_name] = signal
    return out
