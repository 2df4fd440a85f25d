"""Fuzzing a live server with 10,000+ random and mutated frames while a valid client keeps being served."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

import zmq

from instruments import DIFFRACTOMETER, InstrumentBusy, InstrumentClient, InstrumentServer, JobContext

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
