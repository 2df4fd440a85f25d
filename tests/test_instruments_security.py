"""CurveZMQ on loopback: encrypted service for listed keys, refusals logged, per-key allow-lists, key files."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from instruments import (
    VIEWER,
    ClientSecurity,
    EventSubscriber,
    InstrumentClient,
    InstrumentServer,
    InstrumentUnreachable,
    ServerSecurity,
    Unauthorized,
    generate_keypair,
    load_keypair,
)
from instruments.security import is_loopback
from tests.test_instruments_kit import LoopbackDiffractometer, wait_until

LOOPBACK = "tcp://127.0.0.1:*"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    for name in ("xrd-1", "orchestrator", "dashboard", "stranger", "impostor-server"):
        generate_keypair(folder, name)
    return folder


@pytest.fixture
def server(keys: Path) -> Iterator[InstrumentServer]:
    security = ServerSecurity.from_key_files(
        keys / "xrd-1.key_secret",
        controllers=[keys / "orchestrator.key"],
        viewers=[keys / "dashboard.key"],
    )
    with InstrumentServer(
        LoopbackDiffractometer(), LOOPBACK, security=security, events_address=LOOPBACK
    ) as srv:
        srv.start()
        yield srv


def _as(keys: Path, name: str, server_key: str = "xrd-1") -> ClientSecurity:
    return ClientSecurity.from_key_files(keys / f"{name}.key_secret", keys / f"{server_key}.key")


def test_listed_controller_runs_over_curve(server: InstrumentServer, keys: Path) -> None:
    with InstrumentClient.connect(server.address, timeout_s=2.0, security=_as(keys, "orchestrator")) as cli:
        result = cli.run({"n_points": 50}, job_id="c-1", timeout_s=5.0)
        assert len(result["reading"]["two_theta_deg"]) == 50


def test_viewer_may_read_but_not_run_and_the_refusal_is_logged(
    server: InstrumentServer, keys: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with InstrumentClient(server.address, timeout_s=2.0, security=_as(keys, "dashboard")) as viewer:
        assert viewer.status()["state"] == "idle"
        with caplog.at_level(logging.WARNING, logger="instruments"):
            with pytest.raises(Unauthorized, match="may not send 'run'"):
                viewer.submit({}, job_id="v-1")
            with pytest.raises(Unauthorized):
                viewer.stop()
        assert any("refused 'run' from client" in r.getMessage() for r in caplog.records)
        assert viewer.job("v-1")["state"] == "unknown"


def test_unknown_key_is_refused_and_logged(
    server: InstrumentServer, keys: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stranger_public, _ = load_keypair(keys / "stranger.key_secret")
    with caplog.at_level(logging.WARNING, logger="instruments"):
        with InstrumentClient(server.address, timeout_s=0.3, retries=0, security=_as(keys, "stranger")) as cli:
            with pytest.raises(Unauthorized, match="refused this client's CurveZMQ key"):
                cli.ping()
    assert any(stranger_public.decode() in r.getMessage() for r in caplog.records)


def test_wrong_server_key_or_no_encryption_gets_nothing(server: InstrumentServer, keys: Path) -> None:
    impostor = _as(keys, "orchestrator", server_key="impostor-server")
    with InstrumentClient(server.address, timeout_s=0.3, retries=0, security=impostor) as cli:
        with pytest.raises(Unauthorized, match="handshake failed"):
            cli.ping()
    with pytest.raises(InstrumentUnreachable):
        InstrumentClient.connect(server.address, timeout_s=0.3, retries=0)


def test_events_are_encrypted_too(server: InstrumentServer, keys: Path) -> None:
    assert server.events_address is not None
    security = _as(keys, "orchestrator")
    with EventSubscriber(server.events_address, security=security) as events, InstrumentClient(
        server.address, timeout_s=2.0, security=security
    ) as cli:

        def heard() -> bool:
            cli.acquire_lease(1.0)
            return events.next(timeout_s=0.02) is not None

        wait_until(heard, timeout_s=3.0, what="an encrypted event arrives")


def test_generate_keypair_writes_a_private_secret(tmp_path: Path) -> None:
    public, secret = generate_keypair(tmp_path / "k", "lab-1")
    assert public.name == "lab-1.key" and secret.name == "lab-1.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    public_key, secret_key = load_keypair(secret)
    assert len(public_key) == len(secret_key) == 40
    with pytest.raises(FileExistsError):
        generate_keypair(tmp_path / "k", "lab-1")
    with pytest.raises(ValueError, match="key name"):
        generate_keypair(tmp_path / "k", "../evil")


def test_allow_lists_name_only_known_commands(keys: Path) -> None:
    public, secret = load_keypair(keys / "xrd-1.key_secret")
    with pytest.raises(ValueError, match="unknown command"):
        ServerSecurity(public_key=public, secret_key=secret, clients={public: {"fly"}})
    security = ServerSecurity(public_key=public, secret_key=secret, clients={public: VIEWER})
    assert security.allowed_for(public.decode()) == VIEWER
    assert security.allowed_for("x" * 40) == frozenset()
    with pytest.raises(ValueError, match="40 Z85 characters"):
        ClientSecurity(public_key=b"short", secret_key=secret, server_public_key=public)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://127.0.0.1:*", True),
        ("tcp://localhost:5555", True),
        ("tcp://[::1]:5555", True),
        ("ipc:///tmp/xrd", True),
        ("inproc://xrd", True),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://*:5555", False),
        ("tcp://192.168.1.20:5555", False),
        ("tcp://xrd.lab.example:5555", False),
        ("tcp://eth0:5555", False),
    ],
)
def test_loopback_rule(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback
