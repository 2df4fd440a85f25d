"""Shared parts of the instrument tests: a small real diffractometer driver and condition polling."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from instruments import DIFFRACTOMETER, Diffractogram, JobContext


class LoopbackDiffractometer:
    """A real driver that measures a synthetic pattern: one Gaussian peak on a flat background.

    Run params: ``n_points`` (int), ``peak_deg`` (float), ``fail`` (str, raise with that message),
    ``hold`` (bool, block until ``release()`` or an abort). Counts its runs and aborts.
    """

    kind = DIFFRACTOMETER

    def __init__(self, name: str = "xrd-test") -> None:
        self.name = name
        self.runs = 0
        self.aborts = 0
        self._release = threading.Event()
        self.started = threading.Event()
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "model": "loopback", "params": {"n_points": "int"}}

    def release(self) -> None:
        self._release.set()

    def run(self, params: dict[str, Any], job: JobContext) -> dict[str, Any]:
        with self._lock:
            self.runs += 1
        self.started.set()
        if params.get("hold"):
            while not self._release.wait(0.005):
                if job.aborted:
                    raise RuntimeError("stopped by abort")
            self._release.clear()
        if "fail" in params:
            raise RuntimeError(params["fail"])
        job.progress(0.5, "half way")
        pattern = self.measure(int(params.get("n_points", 100)), float(params.get("peak_deg", 30.0)))
        return {"reading": pattern.as_dict()}

    @staticmethod
    def measure(n_points: int, peak_deg: float = 30.0) -> Diffractogram:
        two_theta = np.linspace(10.0, 80.0, n_points)
        counts = 50.0 + 1000.0 * np.exp(-0.5 * ((two_theta - peak_deg) / 0.1) ** 2) + np.sin(two_theta) / 3
        return Diffractogram(
            two_theta_deg=two_theta, counts=counts, wavelength_angstrom=1.5406, sample_id="S-1",
            metadata={"note": "ünïcode ok"},
        )

    def abort(self) -> None:
        with self._lock:
            self.aborts += 1


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition`` every 5 ms until true; fail after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s")
        time.sleep(0.005)
