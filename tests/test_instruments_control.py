"""Control of shared instruments on loopback: leases, the event stream, heartbeats and the lab-wide stop."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from instruments import (
    EventSubscriber,
    InstrumentClient,
    InstrumentServer,
    InstrumentTimeout,
    InstrumentUnreachable,
    JobAborted,
    LeaseError,
    stop_all,
)
from tests.test_instruments_kit import LoopbackDiffractometer, wait_until

LOOPBACK = "tcp://127.0.0.1:*"


@pytest.fixture
def driver() -> LoopbackDiffractometer:
    return LoopbackDiffractometer()


@pytest.fixture
def server(driver: LoopbackDiffractometer) -> Iterator[InstrumentServer]:
    with InstrumentServer(driver, LOOPBACK, events_address=LOOPBACK) as srv:
        srv.start()
        yield srv
        driver.release()


def _client(address: str, holder: str, **kwargs: object) -> InstrumentClient:
    return InstrumentClient(address, timeout_s=2.0, poll_interval_s=0.02, holder=holder, **kwargs)  # type: ignore[arg-type]


def test_one_controller_at_a_time_others_read(server: InstrumentServer, driver: LoopbackDiffractometer) -> None:
    with _client(server.address, "alice") as alice, _client(server.address, "bob") as bob:
        lease = alice.acquire_lease(30.0)
        assert lease["holder"] == "alice" and alice.lease_token == lease["token"]
        with pytest.raises(LeaseError, match="leased by 'alice'"):
            bob.acquire_lease(30.0)
        with pytest.raises(LeaseError, match="'run' refused"):
            bob.submit({}, job_id="b-1")
        status = bob.status()  # reading needs no lease
        assert status["lease"]["holder"] == "alice" and 29.0 < status["lease"]["expires_in_s"] <= 30.0
        assert "token" not in status["lease"]
        alice.submit({"hold": True}, job_id="a-1")
        with pytest.raises(LeaseError):
            bob.abort()
        assert bob.stop()["aborted_job_id"] == "a-1"  # the emergency stop is honoured while leased
        with pytest.raises(JobAborted):
            alice.wait("a-1", timeout_s=5.0)
        with pytest.raises(LeaseError):
            bob.reset()
        assert alice.reset() == {"state": "idle"}
        renewed = alice.acquire_lease(30.0)
        assert renewed["token"] == lease["token"]
        assert alice.release_lease() is True
        bob.run({}, job_id="b-1", timeout_s=5.0)


def test_required_lease_and_expiry(driver: LoopbackDiffractometer) -> None:
    with InstrumentServer(driver, LOOPBACK, require_lease=True) as srv:
        srv.start()
        with _client(srv.address, "alice") as alice, _client(srv.address, "bob") as bob:
            with pytest.raises(LeaseError, match="needs the instrument's lease"):
                alice.submit({}, job_id="x-1")
            alice.acquire_lease(0.15)
            alice.run({}, job_id="x-1", timeout_s=5.0)

            def bob_gets_it() -> bool:
                try:
                    bob.acquire_lease(10.0)
                    return True
                except LeaseError:
                    return False

            wait_until(bob_gets_it, timeout_s=3.0, what="the lease expires")
            with pytest.raises(LeaseError):
                alice.submit({}, job_id="x-2")  # its token is stale now


def test_heartbeat_keeps_a_lease_alive(server: InstrumentServer) -> None:
    with _client(server.address, "alice", heartbeat_s=0.03) as alice, _client(server.address, "bob") as bob:
        alice.acquire_lease(0.4)  # renewed every 0.2 s by the heartbeat
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            with pytest.raises(LeaseError):
                bob.acquire_lease(1.0)
            time.sleep(0.05)


def test_heartbeat_detects_a_dead_server_and_its_return(driver: LoopbackDiffractometer) -> None:
    srv = InstrumentServer(driver, LOOPBACK).start()
    address = srv.address
    with InstrumentClient(address, timeout_s=1.0, heartbeat_s=0.05, heartbeat_misses=2) as cli:
        assert cli.alive and cli.ping()["pong"]
        srv.close()
        wait_until(lambda: not cli.alive, timeout_s=3.0, what="heartbeat notices the dead server")
        with pytest.raises(InstrumentUnreachable, match="heartbeat lost"):  # at once, not after a timeout
            cli.status()
        with InstrumentServer(driver, address) as again:  # same port, new server
            again.start()
            wait_until(lambda: cli.alive, timeout_s=3.0, what="heartbeat notices the server is back")
            assert cli.status()["state"] == "idle"


def test_events_stream_state_progress_and_results(server: InstrumentServer) -> None:
    assert server.events_address is not None
    with EventSubscriber(server.events_address) as events, _client(server.address, "alice") as alice:

        def subscribed() -> bool:  # PUB drops events until the subscription has arrived
            alice.acquire_lease(1.0)
            return events.next(timeout_s=0.02) is not None

        wait_until(subscribed, timeout_s=3.0, what="subscription reaches the server")
        alice.release_lease()
        alice.run({"n_points": 20}, job_id="ev-1", timeout_s=5.0)
        seen: list[tuple[str, str]] = []
        done = events.wait_for(
            lambda e: seen.append((e["topic"], str(e["data"].get("state")))) or e["topic"] == "job",
            timeout_s=3.0,
        )
        assert done is not None and done["data"]["job_id"] == "ev-1" and done["data"]["state"] == "done"
        assert len(done["data"]["result"]["reading"]["counts"]) == 20
        assert ("state", "busy") in seen and ("progress", "running") in seen
        assert done["instrument"] == "xrd-test" and done["v"] == 1
        idle = events.wait_for(lambda e: e["topic"] == "state", timeout_s=3.0)
        assert idle is not None and idle["data"]["state"] == "idle"
        assert idle["seq"] > done["seq"]


def test_stop_all_halts_every_instrument_and_reports_the_dead(driver: LoopbackDiffractometer) -> None:
    other = LoopbackDiffractometer("xrd-2")
    dead = InstrumentServer(LoopbackDiffractometer("gone"), LOOPBACK)
    dead_address = dead.address
    dead.close()
    with InstrumentServer(driver, LOOPBACK) as one, InstrumentServer(other, LOOPBACK) as two:
        one.start()
        two.start()
        with _client(one.address, "alice") as alice:
            alice.acquire_lease(30.0)
            alice.submit({"hold": True}, job_id="s-1")
            outcome = stop_all([one.address, two.address, dead_address], timeout_s=0.2)
            assert outcome[one.address] is None and outcome[two.address] is None
            assert isinstance(outcome[dead_address], InstrumentTimeout)
            with pytest.raises(JobAborted):
                alice.wait("s-1", timeout_s=5.0)
            assert alice.status()["state"] == "stopped"
        with _client(two.address, "bob") as bob:
            assert bob.status()["state"] == "stopped"


def test_a_held_lease_survives_a_restart_of_the_instrument_server(driver: LoopbackDiffractometer) -> None:
    """The server dies and a new one takes its address (a watchdog restart): the holder's heartbeat re-takes the
    lease on the new server under the holder's own token, so its next run is not refused as someone else's."""
    from tests.conftest import free_tcp_address

    address = free_tcp_address()
    first = InstrumentServer(driver, address)
    first.start()
    with _client(address, "campaign", heartbeat_s=0.1, heartbeat_misses=50) as campaign:
        token = campaign.acquire_lease(2.0)["token"]
        campaign.run({}, job_id="before", timeout_s=5.0)
        first.close()
        second = InstrumentServer(driver, address)
        second.start()
        try:
            wait_until(lambda: (campaign.status().get("lease") or {}).get("holder") == "campaign", 10.0)
            assert campaign.lease_token == token
            campaign.run({}, job_id="after", timeout_s=5.0)  # refused before: the re-taken lease had a new token
            with _client(address, "stranger") as stranger, pytest.raises(LeaseError, match="leased by 'campaign'"):
                stranger.acquire_lease(2.0)
        finally:
            second.close()
