"""Simulated instrument drivers (synthesiser, XRD, SAXS, PDF, XAS) honouring ``instruments.drivers.Driver``.

Each takes a realistic time (furnace ramp and dwell; step-scan or exposure time plus overhead) multiplied by one
``time_factor``: 0 runs instantly, 1e-3 turns an hour into 3.6 s. Samples travel between them on a shared
:class:`SampleTray`; a measuring instrument recomputes the hidden truth of the sample from its scenario and
conditions and measures it. Noise is drawn from :func:`sample_rng` of ``(seed, sample_id, instrument kind)``,
so measuring the same sample again gives the same reading.
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

from instruments.drivers import DIFFRACTOMETER, PDF, SAXS, SYNTHESISER, XAS, JobContext
from instruments.errors import JobAborted
from instruments.readings import Reading
from sim_lab.pdf import PDFDiffractometer
from sim_lab.saxs import SAXSCamera
from sim_lab.scenarios import SampleTruth, Scenario, get_scenario
from sim_lab.tray import SampleTray
from sim_lab.xas import XasSpectrometer
from sim_lab.xrd import PowderDiffractometer

__all__ = [
    "SimulatedDiffractometer",
    "SimulatedPDF",
    "SimulatedSAXS",
    "SimulatedSynthesiser",
    "SimulatedXAS",
    "sample_rng",
]

_TICK_S = 0.05


def sample_rng(seed: int, sample_id: str, salt: str = "") -> np.random.Generator:
    """A generator determined by ``(seed, sample_id, salt)`` alone (stable across processes and versions)."""
    digest = int.from_bytes(hashlib.sha256(f"{sample_id}\x00{salt}".encode()).digest()[:8], "little")
    return np.random.default_rng([int(seed), digest])


def _check_params(params: Mapping[str, Any], required: set[str], optional: set[str]) -> None:
    unknown = sorted(set(params) - required - optional)
    if unknown:
        raise ValueError(f"unknown run parameter(s) {unknown}; allowed: {sorted(required | optional)}")
    missing = sorted(required - set(params))
    if missing:
        raise ValueError(f"missing run parameter(s) {missing}")


def _positive_seconds(params: Mapping[str, Any], name: str, default: float, high: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and 0 < value <= high):
        raise ValueError(f"{name} must be in (0, {high}] s, got {value}")
    return value


def _check_time_factor(time_factor: float) -> float:
    if not (math.isfinite(time_factor) and time_factor >= 0):
        raise ValueError(f"time_factor must be a non-negative number, got {time_factor}")
    return float(time_factor)


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
    """Makes a sample at the requested conditions and puts it on the tray.

    Run parameters: ``{"sample_id": str, "conditions": {parameter name: value}}``; result
    ``{"sample_id", "conditions", "duration_s"}``. The realistic duration is the scenario's
    :meth:`~sim_lab.scenarios.Scenario.synthesis_duration_s` (for a furnace: ramps and dwell). The sample
    reaches the tray only when the run completes; an aborted or failed run leaves no sample.
    """

    kind = SYNTHESISER

    def __init__(
        self,
        scenario: Scenario,
        tray: SampleTray,
        time_factor: float = 0.0,
        seed: int = 0,
        name: str = "sim-synthesiser",
    ) -> None:
        self.scenario = scenario
        self.tray = tray
        self.time_factor = _check_time_factor(time_factor)
        self.seed = seed
        self.name = name
        self._clock = _Clock()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "model": "Crucible simulated synthesis robot",
            "serial_number": f"SIM-SYNTH-{self.seed}",
            "scenario": self.scenario.name,
            "parameters": {
                "sample_id": {"type": "str"},
                "conditions": {p.name: p.as_dict() for p in self.scenario.parameters},
            },
        }

    def run(self, params: dict[str, Any], job: JobContext) -> dict[str, Any]:
        self._clock.abort_requested.clear()
        _check_params(params, {"sample_id", "conditions"}, set())
        sample_id = _sample_id(params)
        if not isinstance(params["conditions"], Mapping):
            raise ValueError(f"conditions must be a mapping of parameter name to value, got {params['conditions']!r}")
        conditions = self.scenario.validate(params["conditions"])
        duration_s = self.scenario.synthesis_duration_s(conditions)
        self._clock.wait(duration_s, self.time_factor, job, f"making {sample_id}")
        self.tray.put(sample_id, self.scenario.name, conditions)
        return {"sample_id": sample_id, "conditions": conditions, "duration_s": duration_s}

    def abort(self) -> None:
        self._clock.abort_requested.set()


class _MeasuringInstrument:
    """What every simulated characterisation instrument shares: tray lookup, truth, timing, abort, noise."""

    kind: str
    model: str
    exposure_name: str = "exposure_s"
    default_exposure_s: float = 1.0
    max_exposure_s: float = 3600.0
    extra_params: frozenset[str] = frozenset()

    def __init__(self, scenario: Scenario, tray: SampleTray, time_factor: float, seed: int, name: str) -> None:
        self.scenario = scenario
        self.tray = tray
        self.time_factor = _check_time_factor(time_factor)
        self.seed = seed
        self.name = name
        self._clock = _Clock()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "model": self.model,
            "serial_number": f"SIM-{self.kind.upper()}-{self.seed}",
            "parameters": {
                "sample_id": {"type": "str"},
                self.exposure_name: {
                    "type": "float",
                    "unit": "s",
                    "default": self.default_exposure_s,
                    "low": 0.0,
                    "high": self.max_exposure_s,
                },
                **self._describe_extra_params(),
            },
            **self._describe_instrument(),
        }

    def _describe_extra_params(self) -> dict[str, Any]:
        return {}

    def _describe_instrument(self) -> dict[str, Any]:
        return {}

    def duration_s(self, exposure_s: float) -> float:
        """Realistic measurement time in seconds for one run."""
        raise NotImplementedError

    def _measure(
        self, truth: SampleTruth, exposure_s: float, params: dict[str, Any], rng: np.random.Generator, sample_id: str
    ) -> Reading:
        raise NotImplementedError

    def _check(self, truth: SampleTruth, params: dict[str, Any], sample_id: str) -> None:
        """Refuse, before any instrument time is spent, a run that cannot measure this sample."""

    def _scenario_for(self, scenario_name: str) -> Scenario:
        return self.scenario if scenario_name == self.scenario.name else get_scenario(scenario_name)

    def run(self, params: dict[str, Any], job: JobContext) -> dict[str, Any]:
        self._clock.abort_requested.clear()
        _check_params(params, {"sample_id"}, {self.exposure_name, *self.extra_params})
        sample_id = _sample_id(params)
        exposure_s = _positive_seconds(params, self.exposure_name, self.default_exposure_s, self.max_exposure_s)
        sample = self.tray.get(sample_id)
        truth = self._scenario_for(sample.scenario_name).truth(sample.conditions)
        self._check(truth, params, sample_id)
        duration_s = self.duration_s(exposure_s)
        self._clock.wait(duration_s, self.time_factor, job, f"measuring {sample_id}")
        reading = self._measure(truth, exposure_s, params, sample_rng(self.seed, sample_id, self.kind), sample_id)
        reading.metadata["instrument"] = self.name
        reading.metadata["duration_s"] = duration_s
        return {"reading": reading.as_dict()}

    def abort(self) -> None:
        self._clock.abort_requested.set()


class SimulatedDiffractometer(_MeasuringInstrument):
    """A powder diffractometer: ``{"sample_id", "counting_time_s": 1.0}`` (s per step) -> a Diffractogram.

    Duration: ``overhead_s`` (loading, alignment) plus steps × counting time (~1 h at 1 s/step). A
    ``zero_shift_drift_deg`` (set by fault injection) moves the real zero shift; readings still report the
    nominal calibration, as a drifting instrument would.
    """

    kind = DIFFRACTOMETER
    model = "Crucible simulated Bragg-Brentano powder diffractometer"
    exposure_name = "counting_time_s"
    max_exposure_s = 100.0

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
        super().__init__(scenario, tray, time_factor, seed, name)
        self.diffractometer = diffractometer if diffractometer is not None else PowderDiffractometer()
        self.overhead_s = overhead_s
        self.zero_shift_drift_deg = 0.0

    def _describe_instrument(self) -> dict[str, Any]:
        d = self.diffractometer
        return {
            "wavelength_angstrom": d.wavelength_angstrom,
            "wavelength_ka2_angstrom": d.wavelength_ka2_angstrom,
            "ka2_ratio": d.ka2_ratio,
            "two_theta_min_deg": d.two_theta_min_deg,
            "two_theta_max_deg": d.two_theta_max_deg,
            "step_deg": d.step_deg,
            "calibration": d.calibration(),
        }

    def duration_s(self, exposure_s: float) -> float:
        return self.overhead_s + self.diffractometer.two_theta_deg.size * exposure_s

    def _measure(
        self, truth: SampleTruth, exposure_s: float, params: dict[str, Any], rng: np.random.Generator, sample_id: str
    ) -> Reading:
        instrument = self.diffractometer
        if self.zero_shift_drift_deg:
            instrument = replace(instrument, zero_shift_deg=instrument.zero_shift_deg + self.zero_shift_drift_deg)
        reading = instrument.measure(truth.phases, exposure_s, rng, sample_id=sample_id)
        reading.metadata["calibration"] = self.diffractometer.calibration()
        return reading


class SimulatedSAXS(_MeasuringInstrument):
    """A SAXS camera: ``{"sample_id", "exposure_s": 10.0}`` -> a ScatteringCurve of the sample's particles.

    Duration: ``overhead_s`` (capillary loading, background run) plus the exposure. A powder scenario has no
    particle populations, so its curve is the flat background alone.
    """

    kind = SAXS
    model = "Crucible simulated pinhole SAXS camera"
    default_exposure_s = 10.0

    def __init__(
        self,
        scenario: Scenario,
        tray: SampleTray,
        camera: SAXSCamera | None = None,
        time_factor: float = 0.0,
        seed: int = 0,
        name: str = "sim-saxs",
        overhead_s: float = 120.0,
    ) -> None:
        super().__init__(scenario, tray, time_factor, seed, name)
        self.camera = camera if camera is not None else SAXSCamera()
        self.overhead_s = overhead_s

    def _describe_instrument(self) -> dict[str, Any]:
        c = self.camera
        return {"q_min_inv_angstrom": c.q_min_inv_angstrom, "q_max_inv_angstrom": c.q_max_inv_angstrom}

    def duration_s(self, exposure_s: float) -> float:
        return self.overhead_s + exposure_s

    def _measure(
        self, truth: SampleTruth, exposure_s: float, params: dict[str, Any], rng: np.random.Generator, sample_id: str
    ) -> Reading:
        return self.camera.measure(truth.particles, exposure_s, rng, sample_id=sample_id)


class SimulatedPDF(_MeasuringInstrument):
    """A total-scattering (PDF) setup: ``{"sample_id", "exposure_s": 60.0}`` -> a PairDistribution.

    Duration: ``overhead_s`` (mounting, dark and empty-container runs) plus the exposure.
    """

    kind = PDF
    model = "Crucible simulated rapid-acquisition PDF beamline"
    default_exposure_s = 60.0

    def __init__(
        self,
        scenario: Scenario,
        tray: SampleTray,
        instrument: PDFDiffractometer | None = None,
        time_factor: float = 0.0,
        seed: int = 0,
        name: str = "sim-pdf",
        overhead_s: float = 60.0,
    ) -> None:
        super().__init__(scenario, tray, time_factor, seed, name)
        self.instrument = instrument if instrument is not None else PDFDiffractometer()
        self.overhead_s = overhead_s

    def _describe_instrument(self) -> dict[str, Any]:
        i = self.instrument
        return {"q_max_inv_angstrom": i.q_max_inv_angstrom, "r_max_angstrom": i.r_max_angstrom}

    def duration_s(self, exposure_s: float) -> float:
        return self.overhead_s + exposure_s

    def _measure(
        self, truth: SampleTruth, exposure_s: float, params: dict[str, Any], rng: np.random.Generator, sample_id: str
    ) -> Reading:
        return self.instrument.measure(truth.phases, exposure_s, rng, sample_id=sample_id)


class SimulatedXAS(_MeasuringInstrument):
    """A XANES setup: ``{"sample_id", "exposure_s": 1.0 (per point), "edge": str}`` -> a Spectrum.

    ``edge`` defaults to the sample's first absorber edge; asking for an edge of an element the sample does not
    contain raises ValueError naming the edges it does. Duration: ``overhead_s`` plus points × exposure.
    """

    kind = XAS
    model = "Crucible simulated XANES beamline"
    max_exposure_s = 60.0
    extra_params = frozenset({"edge"})

    def __init__(
        self,
        scenario: Scenario,
        tray: SampleTray,
        spectrometer: XasSpectrometer | None = None,
        time_factor: float = 0.0,
        seed: int = 0,
        name: str = "sim-xas",
        overhead_s: float = 300.0,
    ) -> None:
        super().__init__(scenario, tray, time_factor, seed, name)
        self.spectrometer = spectrometer if spectrometer is not None else XasSpectrometer()
        self.overhead_s = overhead_s

    def _describe_extra_params(self) -> dict[str, Any]:
        return {"edge": {"type": "str", "default": "the sample's first absorber edge"}}

    def duration_s(self, exposure_s: float) -> float:
        s = self.spectrometer
        points = round((s.pre_edge_ev + s.post_edge_ev) / s.step_ev) + 1
        return self.overhead_s + points * exposure_s

    def _check(self, truth: SampleTruth, params: dict[str, Any], sample_id: str) -> None:
        if not truth.oxidation_states:
            raise ValueError(f"sample {sample_id!r} contains no absorber this spectrometer models")
        edge = params.get("edge")
        if edge is not None and edge not in truth.oxidation_states:
            raise ValueError(f"sample {sample_id!r} has no {edge!r} edge; it has {sorted(truth.oxidation_states)}")

    def _measure(
        self, truth: SampleTruth, exposure_s: float, params: dict[str, Any], rng: np.random.Generator, sample_id: str
    ) -> Reading:
        edge = params.get("edge") or next(iter(truth.oxidation_states))
        return self.spectrometer.measure(edge, truth.oxidation_states[edge], exposure_s, rng, sample_id=sample_id)
