"""The CLI's lab commands: emergency stop of every instrument of a campaign, and key generation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from instruments.client import InstrumentClient
from orchestrator.simulated_lab import SimulatedLab
from orchestrator.spec import parse_campaign
from tests.conftest import example_campaign

ROOT = Path(__file__).parent.parent


def crucible(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_stop_all_halts_every_instrument_of_the_lab(tmp_path: Path) -> None:
    data = example_campaign(name="stoppable")
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = parse_campaign(data)
    with SimulatedLab(spec, tmp_path / "tray"):
        holder = InstrumentClient(spec.instruments["xrd"].address, timeout_s=2.0)
        holder.acquire_lease(60.0)  # a campaign holds the diffractometer
        result = crucible("stop", str(path), "--all", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("stopped") == 2
        for instrument in spec.instruments.values():
            with InstrumentClient(instrument.address, timeout_s=2.0) as client:
                assert client.status()["state"] == "stopped"
        holder.close()


def test_stop_needs_all_or_an_address(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(example_campaign()))
    result = crucible("stop", str(path), cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.startswith("error: give --all")


def test_keys_writes_a_curve_key_pair(tmp_path: Path) -> None:
    result = crucible("keys", "orchestrator", "--dir", str(tmp_path / "keys"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    public = (tmp_path / "keys" / "orchestrator.key").read_text()
    assert "public-key" in public
    assert oct((tmp_path / "keys" / "orchestrator.key_secret").stat().st_mode & 0o777) == "0o600"
    again = crucible("keys", "orchestrator", "--dir", str(tmp_path / "keys"), cwd=tmp_path)
    assert again.returncode == 1 and "orchestrator" in again.stderr and "Traceback" not in again.stderr
