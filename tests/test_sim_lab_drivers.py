"""Simulated drivers, the shared sample tray and ``python -m sim_lab.serve`` on real loopback sockets."""

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
from instruments.errors import JobAborted, JobFailed
from instruments.readings import Diffractogram
from sim_lab.drivers import SimulatedDiffractometer, SimulatedSynthesiser
from sim_lab.scenarios import TiO2Calcination
from sim_lab.tray import SampleTray

CONDITIONS = {"anneal_temperature_c": 680.0, "anneal_time_h": 2.0, "dopant_fraction": 0.03}
REPO = Path(__file__).resolve().parents[1]


class Job:
    """A minimal ``JobContext``: records progress and can be flagged as aborted."""

    def __init__(self, job_id: str = "job-1") -> None:
        self.job_id = job_id
        self.abort_flag = threading.Event()
        self.reports: list[float] = []

    @property
    def aborted(self) -> bool:
        return self.abort_flag.is_set()

    def progress(self, fraction: float, message: str = "") -> None:
        self.reports.append(fraction)


@pytest.fixture
def lab(tmp_path: Path) -> tuple[SimulatedSynthesiser, SimulatedDiffractometer]:
    scenario = TiO2Calcination()
    return (
        SimulatedSynthesiser(scenario, SampleTray(tmp_path), seed=7),
        SimulatedDiffractometer(scenario, SampleTray(tmp_path), seed=7),
    )


def test_tray_is_shared_between_instances_on_one_directory(tmp_path: Path) -> None:
    writer, reader = SampleTray(tmp_path), SampleTray(tmp_path)
    writer.put("exp-0001", "tio2_calcination", CONDITIONS)
    sample = reader.get("exp-0001")
    assert sample.scenario_name == "tio2_calcination" and sample.conditions == CONDITIONS
    assert "exp-0001" in reader and reader.sample_ids() == ["exp-0001"]
    with pytest.raises(KeyError, match="never synthesised"):
        reader.get("exp-0002")


def test_tray_put_is_idempotent_but_refuses_a_different_sample_under_one_id(tmp_path: Path) -> None:
    tray = SampleTray(tmp_path)
    tray.put("a/b c", "tio2_calcination", CONDITIONS)  # any string is a valid id, even with a slash
    tray.put("a/b c", "tio2_calcination", dict(CONDITIONS))
    with pytest.raises(ValueError, match="already on the tray"):
        tray.put("a/b c", "tio2_calcination", {**CONDITIONS, "dopant_fraction": 0.0})
    assert [p.name for p in tmp_path.iterdir()] == ["a%2Fb%20c.json"]
    with pytest.raises(ValueError, match="invalid sample_id"):
        tray.put("..", "tio2_calcination", CONDITIONS)


def test_drivers_honour_the_driver_protocol(lab) -> None:
    for driver in lab:
        assert isinstance(driver, Driver)
        description = driver.describe()
        assert description["kind"] == driver.kind and "parameters" in description
    assert lab[0].describe()["parameters"]["conditions"]["anneal_time_h"]["unit"] == "h"
    assert lab[1].describe()["parameters"]["counting_time_s"]["unit"] == "s"


def test_synthesise_then_measure(lab) -> None:
    synthesiser, diffractometer = lab
    made = synthesiser.run({"sample_id": "exp-1", "conditions": CONDITIONS}, Job())
    assert made["sample_id"] == "exp-1" and made["conditions"] == CONDITIONS
    assert made["duration_s"] == pytest.approx(2 * 655 / 10 * 60 + 2 * 3600)
    result = diffractometer.run({"sample_id": "exp-1", "counting_time_s": 0.5}, Job())
    reading = Diffractogram.from_dict(result["reading"])
    assert reading.sample_id == "exp-1" and reading.counting_time_s == 0.5
    # The pattern is that of the truth: anatase 101 dominates, with the rutile 110 line present.
    truth = TiO2Calcination().truth(CONDITIONS)
    expected = diffractometer.diffractometer.expected_counts(truth.phases, 0.5)
    assert np.corrcoef(reading.counts, expected)[0, 1] > 0.99


def test_remeasurement_is_reproducible_and_samples_differ(lab) -> None:
    synthesiser, diffractometer = lab
    for sample_id in ("exp-1", "exp-2"):
        synthesiser.run({"sample_id": sample_id, "conditions": CONDITIONS}, Job())
    first = diffractometer.run({"sample_id": "exp-1"}, Job())["reading"]["counts"]
    again = diffractometer.run({"sample_id": "exp-1"}, Job())["reading"]["counts"]
    other = diffractometer.run({"sample_id": "exp-2"}, Job())["reading"]["counts"]
    assert first == again and first != other


def test_bad_run_parameters_name_the_problem(lab) -> None:
    synthesiser, diffractometer = lab
    with pytest.raises(ValueError, match="anneal_temperature_c"):
        synthesiser.run({"sample_id": "x", "conditions": {**CONDITIONS, "anneal_temperature_c": 1500}}, Job())
    with pytest.raises(ValueError, match="unknown run parameter"):
        synthesiser.run({"sample_id": "x", "conditions": CONDITIONS, "colour": "red"}, Job())
    with pytest.raises(ValueError, match="counting_time_s"):
        diffractometer.run({"sample_id": "x", "counting_time_s": -1}, Job())
    with pytest.raises(KeyError, match="never synthesised"):
        diffractometer.run({"sample_id": "never-made"}, Job())


def test_abort_stops_a_slow_anneal_and_leaves_no_sample(tmp_path: Path) -> None:
    tray = SampleTray(tmp_path)
    synthesiser = SimulatedSynthesiser(TiO2Calcination(), tray, time_factor=1.0)  # a real-time 2 h anneal
    job = Job()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            synthesiser.run({"sample_id": "slow", "conditions": CONDITIONS}, job)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 5.0
    while not job.reports and time.monotonic() < deadline:
        time.sleep(0.01)
    job.abort_flag.set()
    synthesiser.abort()
    worker.join(2.0)
    assert not worker.is_alive()
    assert isinstance(outcome[0], JobAborted)
    assert "slow" not in tray


def test_time_factor_scales_the_wait(tmp_path: Path) -> None:
    tray = SampleTray(tmp_path)
    synthesiser = SimulatedSynthesiser(TiO2Calcination(), tray, time_factor=1e-5)  # 2 h 22 min -> ~0.09 s
    job = Job()
    start = time.monotonic()
    synthesiser.run({"sample_id": "quick", "conditions": CONDITIONS}, job)
    assert time.monotonic() - start >= 0.08
    assert job.reports[0] < 0.1 and job.reports[-1] == 1.0


def _serve(instrument: str, tray: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sim_lab.serve", "--instrument", instrument, "--scenario", "tio2_calcination",
         "--address", "tcp://127.0.0.1:*", "--tray", str(tray), "--seed", "3", "--name", f"sim-{instrument}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = process.stdout.readline() if process.stdout else ""
    if not line.startswith(f"serving {instrument} at tcp://127.0.0.1:"):
        process.kill()
        raise AssertionError(f"server did not start: {line!r} {process.stderr.read() if process.stderr else ''}")
    return process, line.split(" at ", 1)[1].strip()


def test_served_instruments_make_and_measure_a_sample_over_zeromq(tmp_path: Path) -> None:
    furnace, furnace_address = _serve("synthesiser", tmp_path)
    xrd, xrd_address = _serve("diffractometer", tmp_path)
    try:
        with (
            InstrumentClient.connect(furnace_address, timeout_s=10.0) as synthesiser,
            InstrumentClient.connect(xrd_address, timeout_s=10.0) as diffractometer,
        ):
            assert diffractometer.describe()["name"] == "sim-diffractometer"
            synthesiser.run({"sample_id": "exp-9", "conditions": CONDITIONS}, job_id="exp-9-synth", timeout_s=30)
            result = diffractometer.run({"sample_id": "exp-9"}, job_id="exp-9-xrd", timeout_s=30)
            reading = Diffractogram.from_dict(result["reading"])
            assert reading.sample_id == "exp-9" and reading.counts.size == 3501
            with pytest.raises(JobFailed, match="never synthesised"):
                diffractometer.run({"sample_id": "exp-10"}, job_id="exp-10-xrd", timeout_s=30)
    finally:
        for process in (furnace, xrd):
            process.terminate()
        for process in (furnace, xrd):
            assert process.wait(timeout=10) == 0
