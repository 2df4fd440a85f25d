"""Shared fixtures: free loopback ports, campaign files on them, a session-wide Prefect test harness; Branin."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import math
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.planner import ParameterSpec

EXAMPLES = Path(__file__).parent.parent / "examples"


BRANIN_SPACE = [ParameterSpec("x1", -5.0, 10.0), ParameterSpec("x2", 0.0, 15.0)]


def branin(x1: float, x2: float) -> float:
    """Branin on its native domain ``x1 in [-5, 10], x2 in [0, 15]`` (`BRANIN_SPACE`); minimum 0.397887."""
    return (
        (x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2
        + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1)
        + 10
    )


def free_tcp_address() -> str:
    """A loopback TCP endpoint nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def example_campaign(**overrides: Any) -> dict[str, Any]:
    """The demo campaign, moved to free ports, with top-level ``overrides`` applied."""
    data = yaml.safe_load((EXAMPLES / "tio2_anneal.yaml").read_text())
    for instrument in data["instruments"].values():
        instrument["address"] = free_tcp_address()
    data.update(overrides)
    return data


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One real temporary Prefect API server (SQLite) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def prefect_api_env(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """``crucible`` subprocesses of the test run their flows against the session's Prefect server (as a lab's CLI
    would against its own), instead of each starting a temporary one."""
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))


ROOT = Path(__file__).parent.parent


def _cli_environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}


def crucible(*args: str, cwd: Path, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the ``crucible`` CLI as a user does, in a process of its own, and wait for it."""
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=cwd,
        env=_cli_environment(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def start_crucible(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """Start the ``crucible`` CLI in a process of its own (its output piped), without waiting for it."""
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=cwd,
        env=_cli_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A new, empty database on the machine's PostgreSQL server, dropped after the test."""
    from tests.test_scale_out import POSTGRES, admin_connection

    name = f"crucible_test_{uuid.uuid4().hex[:8]}"
    admin = admin_connection()
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES.replace('postgresql://', 'postgresql+psycopg2://')}/{name}"
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
