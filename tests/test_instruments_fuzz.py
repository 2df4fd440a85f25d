"""Fuzzing a live server with 10,000+ random and mutated frames while a valid client keeps being served."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from instruments import DIFFRACTOMETER, InstrumentBusy, InstrumentClient, InstrumentServer, JobContext
from tests.conftest import free_tcp_address

N_MESSAGES = 10_000
BATCH = 200

_SEEDS: list[dict[str, Any]] = [
    {"v": 1, "id": "f", "command": "ping", "params": {}},
    {"v": 1, "id": "f", "command": "status", "params": {}},
    {"v": 1, "id": "f", "command": "describe", "params": {}},
    {"v": 1, "id": "f", "command": "job", "params": {"job_id": "fz-1"}},
    {"v": 1, "id": "f", "command": "run", "params": {"job_id": "fz-1", "params": {"x": 1}}},
    {"v": 1, "id": "f", "command": "acquire_lease", "params": {"holder": "fz", "duration_s": -1}},
]
_JUNK_VALUES: list[Any] = [None, True, -1, 2**70, 1.5e308, "", "x" * 300, [], {}, [[[[]]]], {"a": {"b": {}}}]


class QuickDriver:
    """Answers every run at once with a tiny result, whatever the params."""

    kind = DIFFRACTOMETER

    def describe(self) -> dict[str, Any]:
        return {"name": "fuzz-target"}

    def run(self, params: dict[str, Any], job: JobContext) -> dict[str, Any]:
        return {"ok": True}

    def abort(self) -> None:
        pass


def _mutate(rng: random.Random) -> list[bytes]:
    kind = rng.randrange(8)
    seed = json.loads(json.dumps(rng.choice(_SEEDS)))
    if kind == 0:  # random bytes
        return [rng.randbytes(rng.randrange(0, 300))]
    if kind == 1:  # valid JSON with a key changed to junk
        seed[rng.choice(list(seed))] = rng.choice(_JUNK_VALUES)
        return [json.dumps(seed).encode()]
    if kind == 2:  # a key dropped or added
        if rng.random() < 0.5:
            seed.pop(rng.choice(list(seed)))
        else:
            seed[rng.choice(["x", "V", "ID", "params2"])] = 1
        return [json.dumps(seed).encode()]
    if kind == 3:  # params junk
        seed["params"] = {rng.choice(["job_id", "params", "lease", "holder", "zzz"]): rng.choice(_JUNK_VALUES)}
        return [json.dumps(seed).encode()]
    data = bytearray(json.dumps(seed).encode())
    if kind == 4:  # byte flips
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return [bytes(data)]
    if kind == 5:  # truncation
        return [bytes(data[: rng.randrange(len(data))])]
    if kind == 6:  # several frames
        return [bytes(data)] * rng.randrange(2, 4)
    return [rng.choice([b"[" * 100_000, b"\"" + b"\\u0000" * 1000 + b"\"", b"1e99999", b"{}" * 1000, b"null"])]


def test_fuzzed_server_keeps_serving_a_valid_client() -> None:
    rng = random.Random(20240611)
    with InstrumentServer(QuickDriver(), "tcp://127.0.0.1:*") as server:
        server.start()
        stop = threading.Event()
        served: list[float] = []
        failures: list[BaseException] = []

        def valid_client() -> None:
            with InstrumentClient(server.address, timeout_s=2.0, retries=0, poll_interval_s=0.01) as cli:
                n = 0
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        assert cli.ping()["pong"] is True
                        assert cli.status()["name"] == "fuzz-target"
                        n += 1
                        assert cli.run({"n": n}, job_id=f"valid-{n}", timeout_s=2.0) == {"ok": True}
                    except InstrumentBusy:
                        pass  # a fuzzed 'run' got in first; that is service, not failure
                    except BaseException as exc:
                        failures.append(exc)
                        return
                    served.append(time.monotonic() - started)

        thread = threading.Thread(target=valid_client)
        thread.start()
        ctx = zmq.Context.instance()
        fuzzer = ctx.socket(zmq.DEALER)
        fuzzer.setsockopt(zmq.LINGER, 0)
        fuzzer.connect(server.address)
        replies = 0
        started = time.monotonic()
        try:
            for _ in range(N_MESSAGES // BATCH):
                for _ in range(BATCH):
                    fuzzer.send_multipart(_mutate(rng))
                for _ in range(BATCH):
                    assert fuzzer.poll(5000), f"no reply after {replies} replies"
                    body = json.loads(fuzzer.recv())
                    assert set(body) in ({"v", "id", "ok", "result"}, {"v", "id", "ok", "error"})
                    replies += 1
        finally:
            stop.set()
            thread.join(10.0)
            fuzzer.close()
        elapsed = time.monotonic() - started
        assert not failures, failures[0]
        assert replies == N_MESSAGES
        assert len(served) >= 5, f"valid client served only {len(served)} times in {elapsed:.1f} s"


# -- bounded memory: a real server process under oversized requests -----------------------------------------------

MEMORY_MESSAGES = 20_000
RSS_ALLOWANCE_BYTES = 50 * 1024 * 1024


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _request(command: str, params: dict[str, Any], request_id: str = "m") -> bytes:
    return json.dumps({"v": 1, "id": request_id, "command": command, "params": params}).encode()


def _oversized(rng: random.Random, i: int, big_params: str, huge_frame: bytes) -> list[bytes] | None:
    """Every other message is over a limit: long ids and strings, 4 MB run params, 50 MB frames; else None."""
    if i % 2:
        return None
    if i % 2000 == 0:
        return [huge_frame]  # a 50 MB frame, within the 64 MiB frame limit: decoded and refused
    if i % 40 == 0:  # a run with 4 MB of params, a new job each time: the driver refuses them, the job fails
        return [_request("run", {"job_id": f"big-{i}", "params": {"sample_id": f"s{i}", "padding": big_params}})]
    long = "j" * rng.choice([201, 10_000, 200_000])
    field = rng.choice(["job", "run", "holder", "token", "id"])
    if field == "job":
        return [_request("job", {"job_id": long})]
    if field == "run":
        return [_request("run", {"job_id": long, "params": {"sample_id": "x"}})]
    if field == "holder":
        return [_request("acquire_lease", {"holder": long, "duration_s": 5})]
    if field == "token":
        return [_request("release_lease", {"token": long})]
    return [_request("ping", {}, request_id=long)]


def test_server_memory_stays_flat_under_20000_oversized_and_fuzzed_messages(tmp_path: Path) -> None:
    address = free_tcp_address()
    server = subprocess.Popen(
        [sys.executable, "-m", "sim_lab.serve", "--instrument", "synthesiser", "--scenario", "tio2_calcination",
         "--address", address, "--tray", str(tmp_path / "tray"), "--log-file", str(tmp_path / "server.log")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().startswith("serving")
        conditions = {"anneal_temperature_c": 500.0, "anneal_time_h": 2.0, "dopant_fraction": 0.05}
        with InstrumentClient(address, timeout_s=10.0, retries=0, poll_interval_s=0.01) as cli:
            for n in range(5):  # warm up: imports, caches and a few real jobs before the baseline
                cli.run({"sample_id": f"warm-{n}", "conditions": conditions}, job_id=f"warm-{n}", timeout_s=30.0)
        baseline = _rss_bytes(server.pid)
        rng = random.Random(5)
        big_params = "p" * (4 * 1024 * 1024)
        huge_frame = b'{"v": 1, "id": "h", "command": "ping", "params": {"pad": "' + b"z" * (50 * 1024 * 1024) + b'"}}'
        fuzzer = zmq.Context.instance().socket(zmq.DEALER)
        fuzzer.setsockopt(zmq.LINGER, 0)
        fuzzer.connect(address)
        peak = baseline
        valid_runs = 0
        try:
            with InstrumentClient(address, timeout_s=10.0, retries=0, poll_interval_s=0.01) as cli:
                for start in range(0, MEMORY_MESSAGES, BATCH):
                    for i in range(start, start + BATCH):
                        fuzzer.send_multipart(_oversized(rng, i, big_params, huge_frame) or _mutate(rng))
                    for _ in range(BATCH):
                        assert fuzzer.poll(30_000), f"no reply to message {start} + ..."
                        body = json.loads(fuzzer.recv())
                        assert set(body) in ({"v", "id", "ok", "result"}, {"v", "id", "ok", "error"})
                    # the valid client is served between batches, and its jobs still run
                    assert cli.ping()["pong"] is True
                    if start % 2000 == 0:
                        job = f"valid-{start}"
                        try:
                            cli.run({"sample_id": job, "conditions": conditions}, job_id=job, timeout_s=30.0)
                            valid_runs += 1
                        except InstrumentBusy:
                            pass
                        peak = max(peak, _rss_bytes(server.pid))
                final = _rss_bytes(server.pid)
                assert cli.job("big-40")["state"] == "failed"  # remembered, without its 4 MB of params
                assert len(json.dumps(cli.job("big-40"))) < 10_000
        finally:
            fuzzer.close()
        print(f"server RSS {baseline / 2**20:.0f} MB at start, {final / 2**20:.0f} MB after {MEMORY_MESSAGES} "
              f"messages (peak between batches {peak / 2**20:.0f} MB); {valid_runs} valid jobs ran")
        assert valid_runs >= 5
        assert final - baseline <= RSS_ALLOWANCE_BYTES, (
            f"server RSS grew from {baseline / 2**20:.0f} MB to {final / 2**20:.0f} MB"
        )
    finally:
        server.terminate()
        server.wait(10)
