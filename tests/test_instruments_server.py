"""Server and client on real loopback sockets: runs, idempotence, busy, failures, aborts, bad frames."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from instruments import (
    Diffractogram,
    InstrumentBusy,
    InstrumentClient,
    InstrumentServer,
    InstrumentStopped,
    InstrumentTimeout,
    InstrumentUnreachable,
    JobAborted,
    JobFailed,
    JobInterrupted,
    RemoteError,
    reading_from_dict,
)
from tests.test_instruments_kit import LoopbackDiffractometer, wait_until

LOOPBACK = "tcp://127.0.0.1:*"


@pytest.fixture
def driver() -> LoopbackDiffractometer:
    return LoopbackDiffractometer()


@pytest.fixture
def server(driver: LoopbackDiffractometer) -> Iterator[InstrumentServer]:
    with InstrumentServer(driver, LOOPBACK) as srv:
        srv.start()
        yield srv
        driver.release()


@pytest.fixture
def client(server: InstrumentServer) -> Iterator[InstrumentClient]:
    with InstrumentClient.connect(server.address, timeout_s=2.0, poll_interval_s=0.02) as cli:
        yield cli


def _req(command: str, params: dict[str, object], v: int = 1) -> bytes:
    return json.dumps({"v": v, "id": "q", "command": command, "params": params}).encode()


def _raw_exchange(address: str, *frames: bytes, socket_type: int = zmq.DEALER) -> list[bytes]:
    ctx = zmq.Context.instance()
    sock = ctx.socket(socket_type)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    try:
        sock.send_multipart(list(frames))
        assert sock.poll(2000), "no reply to a raw message"
        return sock.recv_multipart()
    finally:
        sock.close()


def test_bound_address_has_the_real_port(server: InstrumentServer) -> None:
    assert server.address.startswith("tcp://127.0.0.1:")
    assert int(server.address.rsplit(":", 1)[1]) > 0


def test_run_returns_the_diffractogram_intact(client: InstrumentClient) -> None:
    result = client.run({"n_points": 3500, "peak_deg": 28.44}, job_id="exp-1-xrd", timeout_s=10.0)
    pattern = reading_from_dict(result["reading"])
    expected = LoopbackDiffractometer.measure(3500, 28.44)
    assert isinstance(pattern, Diffractogram)
    np.testing.assert_array_equal(pattern.two_theta_deg, expected.two_theta_deg)
    np.testing.assert_array_equal(pattern.counts, expected.counts)
    assert pattern.wavelength_angstrom == 1.5406 and pattern.metadata == {"note": "ünïcode ok"}


def test_resubmitting_a_job_id_never_runs_it_twice(
    client: InstrumentClient, driver: LoopbackDiffractometer
) -> None:
    first = client.submit({"hold": True}, job_id="exp-2")
    again = client.submit({"hold": True}, job_id="exp-2")
    assert first["state"] == again["state"] == "running"
    driver.release()
    client.wait("exp-2", timeout_s=5.0)
    done = client.submit({"hold": True}, job_id="exp-2")
    assert done["state"] == "done" and done["progress"] == 1.0
    assert driver.runs == 1


def test_same_job_id_with_other_params_is_a_conflict(client: InstrumentClient) -> None:
    client.run({"n_points": 10}, job_id="exp-3", timeout_s=5.0)
    with pytest.raises(RemoteError) as info:
        client.submit({"n_points": 11}, job_id="exp-3")
    assert info.value.error_type == "conflict"


def test_a_second_job_while_busy_is_refused(client: InstrumentClient, driver: LoopbackDiffractometer) -> None:
    client.submit({"hold": True}, job_id="exp-4a")
    assert client.status()["state"] == "busy"
    with pytest.raises(InstrumentBusy, match="exp-4a") as info:
        client.submit({}, job_id="exp-4b")
    assert info.value.error_type == "busy"
    driver.release()
    client.wait("exp-4a", timeout_s=5.0)
    assert client.job("exp-4b")["state"] == "unknown"
    assert client.status() == {
        "name": "xrd-test", "kind": "diffractometer", "state": "idle", "job_id": None, "lease": None,
    }


def test_driver_exception_becomes_job_failed(client: InstrumentClient) -> None:
    with pytest.raises(JobFailed, match="detector overheated") as info:
        client.run({"fail": "detector overheated"}, job_id="exp-5", timeout_s=5.0)
    assert info.value.job_id == "exp-5"
    snapshot = client.job("exp-5")
    assert snapshot["state"] == "failed" and snapshot["error"] == "RuntimeError: detector overheated"
    assert client.ping()["pong"] is True  # and the server carries on


def test_abort_ends_the_running_job(client: InstrumentClient, driver: LoopbackDiffractometer) -> None:
    client.submit({"hold": True}, job_id="exp-6")
    assert client.abort(job_id="other")["aborted_job_id"] is None
    assert client.abort()["aborted_job_id"] == "exp-6"
    with pytest.raises(JobAborted):
        client.wait("exp-6", timeout_s=5.0)
    assert driver.aborts == 1
    assert client.run({}, job_id="exp-6b", timeout_s=5.0)["reading"]["kind"] == "diffractogram"


def test_emergency_stop_refuses_runs_until_reset(client: InstrumentClient) -> None:
    client.submit({"hold": True}, job_id="exp-7")
    assert client.stop() == {"stopped": True, "aborted_job_id": "exp-7"}
    with pytest.raises(JobAborted):
        client.wait("exp-7", timeout_s=5.0)
    assert client.status()["state"] == "stopped"
    with pytest.raises(InstrumentStopped):
        client.submit({}, job_id="exp-7b")
    # known jobs are still reported
    assert client.submit({"hold": True}, job_id="exp-7")["state"] == "aborted"
    assert client.reset() == {"state": "idle"}
    client.run({}, job_id="exp-7b", timeout_s=5.0)


def test_progress_and_describe(client: InstrumentClient) -> None:
    client.run({}, job_id="exp-8", timeout_s=5.0)
    snapshot = client.job("exp-8")
    assert snapshot["progress_message"] == "half way" and snapshot["elapsed_s"] >= 0
    facts = client.describe()
    assert facts["model"] == "loopback" and facts["protocol_version"] == 1 and "run" in facts["commands"]


def test_several_clients_are_served_at_once(server: InstrumentServer) -> None:
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            with InstrumentClient(server.address, timeout_s=2.0) as cli:
                for _ in range(50):
                    assert cli.status()["name"] == "xrd-test"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10.0)
    assert not errors


@pytest.mark.parametrize(
    ("frames", "error_type", "fragment"),
    [
        ([b"\x00\xffgarbage"], "protocol", "not valid UTF-8"),
        ([b"{}"], "protocol", "missing key(s)"),
        ([b"a", b"b", b"c"], "protocol", "one frame per request, got 3"),
        ([_req("ping", {}, v=9)], "protocol", "unsupported protocol version 9"),
        ([_req("fly", {})], "unknown_command", "unknown command 'fly'"),
        ([_req("job", {"job": "x"})], "bad_params", "unknown param(s)"),
        ([_req("run", {"job_id": 3, "params": {}})], "bad_params", "'job_id' must be str, got int"),
    ],
)
def test_bad_frames_get_an_error_reply_and_the_server_carries_on(
    server: InstrumentServer, client: InstrumentClient, frames: list[bytes], error_type: str, fragment: str
) -> None:
    (reply,) = _raw_exchange(server.address, *frames)
    body = json.loads(reply)
    assert body["ok"] is False and body["error"]["type"] == error_type
    assert fragment in body["error"]["message"]
    assert client.ping()["pong"] is True


def test_a_req_client_is_answered_too(server: InstrumentServer) -> None:
    request = json.dumps({"v": 1, "id": "req-1", "command": "ping", "params": {}}).encode()
    (reply,) = _raw_exchange(server.address, request, socket_type=zmq.REQ)
    assert json.loads(reply)["id"] == "req-1"


def test_oversized_messages_are_refused_without_harm(driver: LoopbackDiffractometer) -> None:
    with InstrumentServer(driver, LOOPBACK, max_message_bytes=1024) as srv:
        srv.start()
        (reply,) = _raw_exchange(srv.address, b"x" * 5000)
        assert "exceeds the limit of 1024 bytes" in json.loads(reply)["error"]["message"]
        ctx = zmq.Context.instance()
        huge = ctx.socket(zmq.DEALER)
        huge.setsockopt(zmq.LINGER, 0)
        huge.connect(srv.address)
        huge.send(b"x" * (3 << 20))  # beyond the hard cap: ZeroMQ drops this connection
        assert not huge.poll(200)
        huge.close()
        with InstrumentClient(srv.address, timeout_s=2.0) as cli:
            assert cli.ping()["pong"] is True


def test_a_dead_server_gives_a_timeout_fast(driver: LoopbackDiffractometer) -> None:
    srv = InstrumentServer(driver, LOOPBACK).start()
    address = srv.address
    cli = InstrumentClient(address, timeout_s=0.2, retries=1, backoff_s=0.01)
    assert cli.ping()["pong"]
    srv.close()
    with pytest.raises(InstrumentTimeout, match="no reply from"):
        cli.status()
    cli.close()
    with pytest.raises(InstrumentUnreachable, match=f"no instrument answers at {address} within 0.2 s"):
        InstrumentClient.connect(address, timeout_s=0.2)


def test_shutdown_command_ends_serving(driver: LoopbackDiffractometer) -> None:
    srv = InstrumentServer(driver, LOOPBACK).start()
    with InstrumentClient(srv.address, timeout_s=2.0) as cli:
        assert cli.shutdown() == {"shutting_down": True}
    assert srv.wait_closed(5.0)
    srv.close()


def test_history_is_bounded(driver: LoopbackDiffractometer) -> None:
    with InstrumentServer(driver, LOOPBACK, history=2) as srv, InstrumentClient(srv.address) as cli:
        srv.start()
        for i in range(3):
            cli.run({"n_points": 5}, job_id=f"h-{i}", timeout_s=5.0)
        assert [cli.job(f"h-{i}")["state"] for i in range(3)] == ["unknown", "done", "done"]


class _Blocking:
    """A driver whose job runs until ``release`` is set, counting its runs."""

    kind = "synthesiser"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.runs = 0

    def describe(self) -> dict[str, object]:
        return {"name": "blocking"}

    def run(self, params: dict[str, object], job: object) -> dict[str, object]:
        self.runs += 1
        self.release.wait(5.0)
        return {"made": params["n"]}

    def abort(self) -> None:
        self.release.set()


def test_a_restarted_server_answers_for_its_jobs_from_its_journal(tmp_path: Path) -> None:
    from instruments.jobs import INTERRUPTED, JobTable

    journal = tmp_path / "jobs" / "furnace.sqlite"
    first = _Blocking()
    table = JobTable(first, journal=journal)
    first.release.set()
    table.submit("done-1", {"n": 1})
    assert table.join(5.0)
    first.release.clear()
    table.submit("cut-2", {"n": 2})  # still running when the "process dies": the table is simply abandoned
    second = _Blocking()
    second.release.set()
    restarted = JobTable(second, journal=journal)
    done = restarted.get("done-1")
    assert (done["state"], done["result"]) == ("done", {"made": 1})
    assert restarted.submit("done-1", {"n": 1})["state"] == "done"  # known: the driver is not run again
    cut = restarted.submit("cut-2", {"n": 2})
    assert (cut["state"], cut["error"]) == ("interrupted", INTERRUPTED)
    with pytest.raises(Exception, match="different params"):
        restarted.submit("done-1", {"n": 99})
    assert second.runs == 0
    first.release.set()
    table.join(5.0)


def test_a_server_started_on_a_journal_reports_interrupted_jobs(tmp_path: Path) -> None:
    from instruments.jobs import INTERRUPTED, JobTable

    journal = tmp_path / "xrd.sqlite"
    stuck = _Blocking()
    JobTable(stuck, journal=journal).submit("xrd-7", {"n": 7})
    driver = _Blocking()
    with InstrumentServer(driver, LOOPBACK, journal=journal) as srv, InstrumentClient(srv.address) as cli:
        srv.start()
        with pytest.raises(JobInterrupted, match="restarted"):
            cli.run({"n": 7}, job_id="xrd-7", timeout_s=5.0)
        assert cli.job("xrd-7")["error"] == INTERRUPTED
    assert driver.runs == 0
    stuck.release.set()


def test_string_fields_have_length_limits(driver: LoopbackDiffractometer) -> None:
    with InstrumentServer(driver, LOOPBACK) as srv, InstrumentClient(srv.address) as cli:
        srv.start()
        for command, params in [
            ("job", {"job_id": "j" * 201}),
            ("run", {"job_id": "j" * 201, "params": {}}),
            ("acquire_lease", {"holder": "h" * 201, "duration_s": 1.0}),
            ("release_lease", {"token": "t" * 201}),
        ]:
            with pytest.raises(RemoteError, match="at most 200") as error:
                cli._call(command, params)
            assert len(str(error.value)) < 500


def _fake_router(behaviour: list[str]) -> tuple[str, threading.Thread, zmq.Socket[bytes]]:
    """A hand-written ROUTER that, per request, will 'drop' it, answer it 'late' (after the next) or 'now'."""
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(LOOPBACK)
    address = router.getsockopt_string(zmq.LAST_ENDPOINT)

    def answer(identity: bytes, data: bytes) -> None:
        request = json.loads(data)
        reply = {"v": 1, "id": request["id"], "ok": True, "result": {"echo": request["command"]}}
        router.send_multipart([identity, json.dumps(reply).encode()])

    def serve() -> None:
        pending: list[tuple[bytes, bytes]] = []
        for action in behaviour:
            if not router.poll(5000):
                return
            identity, data = router.recv_multipart()
            if action == "late":
                pending.append((identity, data))
            elif action == "now":
                answer(identity, data)
                for item in pending:
                    answer(*item)
                pending.clear()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return address, thread, router


def test_idempotent_commands_are_retried_and_others_are_not() -> None:
    address, thread, router = _fake_router(["drop", "now", "drop"])
    try:
        with InstrumentClient(address, timeout_s=0.2, retries=1, backoff_s=0.01) as cli:
            assert cli.ping() == {"echo": "ping"}
            with pytest.raises(InstrumentTimeout):
                cli.reset()
        thread.join(5.0)
    finally:
        router.close()


def test_a_late_reply_is_never_taken_for_the_next_one() -> None:
    address, thread, router = _fake_router(["late", "now"])
    try:
        with InstrumentClient(address, timeout_s=0.2, retries=0) as cli:
            with pytest.raises(InstrumentTimeout):
                cli.describe()
            assert cli.status() == {"echo": "status"}
        thread.join(5.0)
    finally:
        router.close()


def test_non_loopback_needs_security_or_an_explicit_opt_out(driver: LoopbackDiffractometer) -> None:
    with pytest.raises(ValueError, match="CurveZMQ is required"):
        InstrumentServer(driver, "tcp://0.0.0.0:*")
    with pytest.raises(ValueError, match="CurveZMQ is required"):
        InstrumentClient("tcp://192.0.2.1:5555")


def test_wait_gives_up_after_its_timeout(client: InstrumentClient, driver: LoopbackDiffractometer) -> None:
    client.submit({"hold": True}, job_id="exp-9")
    wait_until(driver.started.is_set, what="driver started")
    with pytest.raises(InstrumentTimeout, match="still running after 0.1 s"):
        client.wait("exp-9", timeout_s=0.1)
