"""Benchmark of the lab's wire: round-trip latency and reading throughput, plain and with CurveZMQ, side by side.

The server runs in its own process (so client and server do not share one GIL) on loopback; the client runs
here. Figures:

- ping round trip: median and p99 latency of the smallest request, in µs;
- reading throughput: ``job`` queries answered with a finished 3,500-point ``Diffractogram`` (about 0.1 MB of
  JSON), decoded back into a ``Diffractogram``, in messages/s and MB/s;
- run round trip: ``submit`` + ``wait`` of a run that returns such a pattern, median in ms.

Run: ``.venv/bin/python bench/instruments.py [--quick]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This file is called instruments.py: make sure "instruments" means the package, not this script.
_ROOT = str(Path(__file__).resolve().parents[1])
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from instruments import (  # noqa: E402
    DIFFRACTOMETER,
    ClientSecurity,
    Diffractogram,
    InstrumentClient,
    InstrumentServer,
    JobContext,
    ServerSecurity,
    generate_keypair,
)

N_POINTS = 3500


class BenchDiffractometer:
    """Returns the same 3,500-point pattern at once."""

    kind = DIFFRACTOMETER

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        two_theta = np.linspace(10.0, 80.0, N_POINTS)
        counts = rng.poisson(200.0 + 5000.0 * np.exp(-0.5 * ((two_theta - 28.4) / 0.08) ** 2)).astype(float)
        self.reading = Diffractogram(two_theta, counts, wavelength_angstrom=1.5406).as_dict()

    def describe(self) -> dict[str, Any]:
        return {"name": "bench-xrd"}

    def run(self, params: dict[str, Any], job: JobContext) -> dict[str, Any]:
        return {"reading": self.reading}

    def abort(self) -> None:
        pass


def _serve(keys: str | None, queue: Any) -> None:
    security = None
    if keys is not None:
        folder = Path(keys)
        security = ServerSecurity.from_key_files(folder / "server.key_secret", controllers=[folder / "client.key"])
    server = InstrumentServer(BenchDiffractometer(), "tcp://127.0.0.1:*", security=security)
    queue.put(server.address)
    server.serve_forever()


def _measure(keys: str | None, n_ping: int, n_read: int, n_run: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_serve, args=(keys, queue), daemon=True)
    process.start()
    address = queue.get(timeout=60)
    security = None
    if keys is not None:
        folder = Path(keys)
        security = ClientSecurity.from_key_files(folder / "client.key_secret", folder / "server.key")
    figures: dict[str, float] = {}
    try:
        with InstrumentClient.connect(address, timeout_s=10.0, security=security, poll_interval_s=0.002) as cli:
            for _ in range(50):
                cli.ping()
            pings = []
            for _ in range(n_ping):
                started = time.perf_counter()
                cli.ping()
                pings.append(time.perf_counter() - started)
            figures["ping median (µs)"] = float(np.median(pings)) * 1e6
            figures["ping p99 (µs)"] = float(np.percentile(pings, 99)) * 1e6

            cli.run({}, job_id="warm", timeout_s=30.0)
            started = time.perf_counter()
            for _ in range(n_read):
                pattern = Diffractogram.from_dict(cli.job("warm")["result"]["reading"])
            elapsed = time.perf_counter() - started
            assert pattern.counts.size == N_POINTS
            size = _reply_size(cli)
            figures["readings (msg/s)"] = n_read / elapsed
            figures["readings (MB/s)"] = n_read * size / elapsed / 1e6

            runs = []
            for i in range(n_run):
                started = time.perf_counter()
                cli.run({}, job_id=f"run-{i}", timeout_s=30.0)
                runs.append(time.perf_counter() - started)
            figures["run round trip median (ms)"] = float(np.median(runs)) * 1e3
            figures["size"] = size
            cli.shutdown()
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()
    return figures


def _reply_size(cli: InstrumentClient) -> int:
    import json

    body = {"v": 1, "id": "x" * 36, "ok": True, "result": cli.job("warm")}
    return len(json.dumps(body, separators=(",", ":")).encode())


def main() -> None:
    """Measure plain and CurveZMQ and print one table with their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args()
    n_ping, n_read, n_run = (200, 30, 10) if args.quick else (3000, 300, 100)
    with tempfile.TemporaryDirectory() as keys:
        generate_keypair(keys, "server")
        generate_keypair(keys, "client")
        plain = _measure(None, n_ping, n_read, n_run)
        curve = _measure(keys, n_ping, n_read, n_run)
    size_kb = plain.pop("size") / 1e3
    curve.pop("size")
    print(f"instrument wire on loopback: {N_POINTS}-point Diffractogram ({size_kb:.1f} kB of JSON per reading),")
    print("server in its own process")
    print(f"(ping n={n_ping}, readings n={n_read}, runs n={n_run}; ratio = CurveZMQ / plain)\n")
    header = f"{'measure':<28} {'plain':>12} {'CurveZMQ':>12} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    for name in plain:
        ratio = curve[name] / plain[name] if plain[name] else float("nan")
        print(f"{name:<28} {plain[name]:>12.1f} {curve[name]:>12.1f} {ratio:>8.2f}")


if __name__ == "__main__":
    main()
