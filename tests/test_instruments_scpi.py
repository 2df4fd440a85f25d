"""The SCPI example driver against a tiny fake TCP instrument, served and driven over the real wire."""

from __future__ import annotations

import importlib.util
import socketserver
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from instruments import Diffractogram, InstrumentClient, InstrumentServer, JobAborted, JobFailed, reading_from_dict
from tests.test_instruments_kit import wait_until

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "scpi_diffractometer.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scpi_diffractometer", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


scpi = _load_example()


class FakeInstrument:
    """The controller's state: a scan finishes after three status reads unless ``stuck``; counts = 100 + index."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.stuck = False
        self.fail_with: str | None = None
        self.truncate = False
        self._range = (10.0, 80.0, 0.02)
        self._polls = -1

    def answer(self, line: str) -> str:
        self.log.append(line)
        verb, _, args = line.partition(" ")
        if verb == "*IDN?":
            return "ACME,XRD-9000,SN42,1.0"
        if verb == "SCAN:RANG":
            start, stop, step = (float(v) for v in args.split(","))
            self._range = (start, stop, step)
            return "OK"
        if verb == "SCAN:TIME":
            return "OK"
        if verb == "INIT":
            self._polls = 0
            return "OK"
        if verb == "ABOR":
            self._polls = -1
            return "OK"
        if verb == "STAT?":
            if self._polls < 0:
                return "IDLE"
            if self.fail_with:
                return f"ERR,{self.fail_with}"
            self._polls += 1
            return f"RUN,{min(self._polls, 3) / 4:.2f}" if self.stuck or self._polls <= 3 else "DONE"
        if verb == "FETC?":
            start, stop, step = self._range
            n = int(round((stop - start) / step)) + 1
            counts = [f"{100 + i}" for i in range(n)]
            return f"{n + (1 if self.truncate else 0)};{','.join(counts)}"
        return "ERR,unknown command"


@pytest.fixture
def instrument() -> Iterator[tuple[FakeInstrument, int]]:
    fake = FakeInstrument()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for raw in self.rfile:
                self.wfile.write(fake.answer(raw.decode().strip()).encode() + b"\n")

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as tcp:
        tcp.daemon_threads = True
        thread = threading.Thread(target=tcp.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        yield fake, tcp.server_address[1]
        tcp.shutdown()


@pytest.fixture
def client(instrument: tuple[FakeInstrument, int]) -> Iterator[InstrumentClient]:
    _, port = instrument
    driver = scpi.ScpiDiffractometer("127.0.0.1", port, poll_s=0.01, timeout_s=2.0)
    with InstrumentServer(driver, "tcp://127.0.0.1:*") as server:
        server.start()
        with InstrumentClient(server.address, timeout_s=2.0, poll_interval_s=0.02) as cli:
            yield cli


def test_scan_over_the_wire(client: InstrumentClient, instrument: tuple[FakeInstrument, int]) -> None:
    fake, _ = instrument
    facts = client.describe()
    assert facts["name"] == "XRD-9000-SN42" and facts["serial_number"] == "SN42"
    params = {"two_theta_start_deg": 20.0, "two_theta_stop_deg": 30.0, "step_deg": 0.5, "sample_id": "S-7"}
    result = client.run(params, job_id="scpi-1", timeout_s=5.0)
    pattern = reading_from_dict(result["reading"])
    assert isinstance(pattern, Diffractogram) and pattern.sample_id == "S-7"
    np.testing.assert_allclose(pattern.two_theta_deg, np.arange(20.0, 30.0 + 1e-9, 0.5))
    np.testing.assert_array_equal(pattern.counts, 100.0 + np.arange(21))
    init = fake.log.index("INIT")
    assert fake.log[init - 2 : init + 1] == ["SCAN:RANG 20.0000,30.0000,0.50000", "SCAN:TIME 0.5000", "INIT"]
    assert fake.log[-1] == "FETC?"


def test_abort_reaches_the_instrument(client: InstrumentClient, instrument: tuple[FakeInstrument, int]) -> None:
    fake, _ = instrument
    fake.stuck = True
    client.submit({}, job_id="scpi-2")
    wait_until(lambda: client.job("scpi-2")["progress"] > 0, what="the scan is running")
    client.abort()
    with pytest.raises(JobAborted):
        client.wait("scpi-2", timeout_s=5.0)
    assert "ABOR" in fake.log


def test_instrument_errors_fail_the_job(client: InstrumentClient, instrument: tuple[FakeInstrument, int]) -> None:
    fake, _ = instrument
    fake.fail_with = "X-ray tube interlock open"
    with pytest.raises(JobFailed, match="X-ray tube interlock open"):
        client.run({}, job_id="scpi-3", timeout_s=5.0)
    fake.fail_with = None
    fake.truncate = True
    with pytest.raises(JobFailed, match="truncated"):
        client.run({"step_deg": 1.0}, job_id="scpi-4", timeout_s=5.0)
    with pytest.raises(JobFailed, match="bad scan"):
        client.run({"two_theta_start_deg": 90.0, "two_theta_stop_deg": 10.0}, job_id="scpi-5", timeout_s=5.0)
