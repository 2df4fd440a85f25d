"""Injected faults: each kind on demand, at the configured rate, reproducibly, and over the wire."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from instruments.client import InstrumentClient
from instruments.drivers import Driver
from instruments.errors import JobAborted
from instruments.readings import Diffractogram
from sim_lab.drivers import SimulatedDiffractometer, SimulatedSynthesiser
from sim_lab.faults import DEATH_EXIT_CODE, FaultConfig, FaultyDriver, SimulatedInstrumentError
from sim_lab.scenarios import TiO2Calcination
from sim_lab.tray import SampleTray

CONDITIONS = {"anneal_temperature_c": 650.0, "anneal_time_h": 2.0, "dopant_fraction": 0.0}
REPO = Path(__file__).resolve().parents[1]


class Job:
    def __init__(self, job_id: str = "job") -> None:
        self.job_id = job_id
        self.abort_flag = threading.Event()

    @property
    def aborted(self) -> bool:
        return self.abort_flag.is_set()

    def progress(self, fraction: float, message: str = "") -> None:
        pass


class Died(Exception):
    pass


def _die() -> None:
    raise Died


@pytest.fixture
def tray(tmp_path: Path) -> SampleTray:
    tray = SampleTray(tmp_path)
    SimulatedSynthesiser(TiO2Calcination(), tray).run({"sample_id": "s1", "conditions": CONDITIONS}, Job())
    return tray


def xrd(tray: SampleTray, **faults: float) -> FaultyDriver:
    driver = SimulatedDiffractometer(TiO2Calcination(), tray)
    return FaultyDriver(driver, FaultConfig(**faults), seed=1, on_death=_die)


def test_config_is_strict() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        FaultConfig.from_mapping({"gremlin_probability": 0.1})
    with pytest.raises(ValueError, match="error_probability"):
        FaultConfig(error_probability=1.5)
    with pytest.raises(ValueError, match="sum"):
        FaultConfig(error_probability=0.6, death_probability=0.6)
    assert FaultConfig.from_mapping({"error_probability": 0.1}).enabled
    assert not FaultConfig().enabled


def test_wrapped_driver_is_still_a_driver(tray: SampleTray) -> None:
    driver = xrd(tray)
    assert isinstance(driver, Driver) and driver.kind == "diffractometer"
    clean = SimulatedDiffractometer(TiO2Calcination(), tray).run({"sample_id": "s1"}, Job())
    assert driver.run({"sample_id": "s1"}, Job()) == clean


def test_error_death_and_timeout(tray: SampleTray) -> None:
    with pytest.raises(SimulatedInstrumentError):
        xrd(tray, error_probability=1.0).run({"sample_id": "s1"}, Job())
    with pytest.raises(Died):
        xrd(tray, death_probability=1.0).run({"sample_id": "s1"}, Job())
    start = time.monotonic()
    with pytest.raises(SimulatedInstrumentError, match="stopped responding"):
        xrd(tray, timeout_probability=1.0, hang_s=0.2).run({"sample_id": "s1"}, Job())
    assert time.monotonic() - start >= 0.2


def test_a_hung_run_can_be_aborted(tray: SampleTray) -> None:
    driver = xrd(tray, timeout_probability=1.0, hang_s=60.0)
    job = Job()
    threading.Timer(0.1, job.abort_flag.set).start()
    start = time.monotonic()
    with pytest.raises(JobAborted):
        driver.run({"sample_id": "s1"}, job)
    assert time.monotonic() - start < 5.0


def test_corrupted_and_truncated_readings(tray: SampleTray) -> None:
    clean = Diffractogram.from_dict(xrd(tray).run({"sample_id": "s1"}, Job())["reading"])
    truncated = Diffractogram.from_dict(
        xrd(tray, truncation_probability=1.0).run({"sample_id": "s1"}, Job())["reading"]
    )
    assert 0.3 * clean.counts.size <= truncated.counts.size <= 0.9 * clean.counts.size
    np.testing.assert_array_equal(truncated.counts, clean.counts[: truncated.counts.size])
    kinds = set()
    for seed in range(30):
        driver = FaultyDriver(
            SimulatedDiffractometer(TiO2Calcination(), tray), FaultConfig(corruption_probability=1.0), seed
        )
        reading = driver.run({"sample_id": "s1"}, Job())["reading"]
        kinds.add(driver.injected[-1]["how"])
        try:
            counts = Diffractogram.from_dict(reading).counts
        except ValueError:  # refused: a length mismatch, or nulls (non-finite counts)
            counts = reading["counts"]
            assert len(counts) < len(reading["two_theta_deg"]) or any(c is None or not np.isfinite(c) for c in counts)
            continue
        assert np.isnan(counts).any() or counts.max() > 10 * clean.counts.max()
    assert kinds == {"nulls", "spikes", "length_mismatch"}


def test_drift_moves_the_peaks_but_not_the_reported_calibration(tray: SampleTray) -> None:
    driver = xrd(tray, drift_probability=1.0, drift_step_deg=0.05)
    readings = [Diffractogram.from_dict(driver.run({"sample_id": "s1"}, Job())["reading"]) for _ in range(4)]
    steps = [record["step_deg"] for record in driver.injected]
    assert len(steps) == 4 and set(np.abs(steps)) == {0.05}
    assert driver.driver.zero_shift_drift_deg == pytest.approx(sum(steps))
    assert all(r.metadata["calibration"]["zero_shift_deg"] == 0.0 for r in readings)
    x = readings[-1].two_theta_deg
    peak = lambda r: x[np.argmax(np.where(np.abs(x - 25.3) < 1.0, r.counts, 0))]  # noqa: E731
    clean = Diffractogram.from_dict(xrd(tray).run({"sample_id": "s1"}, Job())["reading"])
    assert peak(readings[-1]) - peak(clean) == pytest.approx(sum(steps), abs=0.021)


def test_faults_occur_at_the_configured_rate(tmp_path: Path) -> None:
    tray = SampleTray(tmp_path)
    driver = FaultyDriver(SimulatedSynthesiser(TiO2Calcination(), tray), FaultConfig(error_probability=0.3), seed=5)
    failures = 0
    for i in range(300):
        try:
            driver.run({"sample_id": f"s{i}", "conditions": CONDITIONS}, Job(f"j{i}"))
        except SimulatedInstrumentError:
            failures += 1
            assert f"s{i}" not in tray
    assert 60 <= failures <= 120  # binomial(300, 0.3): mean 90, sd 8


def test_draws_are_reproducible_and_survive_a_restart(tmp_path: Path) -> None:
    tray = SampleTray(tmp_path / "tray")
    config = FaultConfig(error_probability=0.5, drift_probability=0.5)

    def outcomes(driver: FaultyDriver, n: int) -> list[bool]:
        result = []
        for i in range(n):
            try:
                driver.run({"sample_id": f"x{i}", "conditions": CONDITIONS}, Job())
                result.append(True)
            except SimulatedInstrumentError:
                result.append(False)
        return result

    synth = lambda: SimulatedSynthesiser(TiO2Calcination(), tray)  # noqa: E731
    reference = outcomes(FaultyDriver(synth(), config, seed=2), 20)
    state = tmp_path / "state.json"
    first = outcomes(FaultyDriver(synth(), config, seed=2, state_path=state), 10)
    after_restart = outcomes(FaultyDriver(synth(), config, seed=2, state_path=state), 10)
    assert first + after_restart == reference
    diffractometer = SimulatedDiffractometer(TiO2Calcination(), tray)
    drifting = FaultyDriver(diffractometer, FaultConfig(drift_probability=1.0), state_path=tmp_path / "xrd.json")
    tray.put("d", "tio2_calcination", CONDITIONS)
    drifting.run({"sample_id": "d"}, Job())
    restarted = SimulatedDiffractometer(TiO2Calcination(), tray)
    FaultyDriver(restarted, FaultConfig(), state_path=tmp_path / "xrd.json")
    assert restarted.zero_shift_drift_deg == diffractometer.zero_shift_drift_deg != 0.0


def test_a_served_instrument_dies_on_a_death_fault(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sim_lab.serve", "--instrument", "synthesiser", "--scenario", "tio2_calcination",
         "--address", "tcp://127.0.0.1:*", "--tray", str(tmp_path), "--faults", '{"death_probability": 1.0}'],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline() if process.stdout else ""
        address = line.split(" at ", 1)[1].strip()
        with InstrumentClient.connect(address, timeout_s=5.0, retries=0) as client:
            snapshot = client.submit({"sample_id": "doomed", "conditions": CONDITIONS}, job_id="doomed-1")
            assert snapshot["state"] == "running"
        assert process.wait(timeout=10) == DEATH_EXIT_CODE
        assert "doomed" not in SampleTray(tmp_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
