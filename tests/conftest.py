"""Shared fixtures: free loopback ports, campaign files on them, a session-wide Prefect test harness."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

EXAMPLES = Path(__file__).parent.parent / "examples"


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
