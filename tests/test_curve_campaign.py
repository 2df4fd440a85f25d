"""A campaign talks CurveZMQ to instruments given keys in the campaign file; a stranger's key is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from instruments.keys import generate_keypair
from orchestrator.lab import Lab
from orchestrator.simulated_lab import SimulatedLab
from orchestrator.spec import parse_campaign
from tests.conftest import example_campaign

ROOT = Path(__file__).parent.parent


def keyed_campaign(keys: Path, client: str) -> dict:
    data = example_campaign(name="curve")
    data["client_key"] = str(keys / f"{client}.key_secret")
    for name, instrument in data["instruments"].items():
        instrument["server_key"] = str(keys / f"{name}.key")
        instrument["timeout_s"] = 2.0
    return data


def test_encrypted_lab_admits_the_campaign_and_refuses_a_stranger(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    for name in ("orchestrator", "stranger", "furnace", "xrd"):
        generate_keypair(keys, name)
    data = keyed_campaign(keys, "orchestrator")
    spec = parse_campaign(data)
    with SimulatedLab(spec, tmp_path / "tray"):
        with Lab.from_spec(spec) as lab:
            described = lab.check()
            assert {d["kind"] for d in described.values()} == {"synthesiser", "diffractometer"}
        stranger = keyed_campaign(keys, "stranger")
        path = tmp_path / "stranger.yaml"
        path.write_text(yaml.safe_dump(stranger))
        result = subprocess.run(
            [sys.executable, "-m", "flows.cli", "run", str(path), "--runs-dir", str(tmp_path / "runs")],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: instrument 'furnace'"), result.stderr


def test_server_key_without_client_key_is_a_campaign_file_error(tmp_path: Path) -> None:
    import pytest

    from orchestrator.spec import CampaignFileError

    data = keyed_campaign(tmp_path, "orchestrator")
    del data["client_key"]
    with pytest.raises(CampaignFileError, match="give client_key"):
        parse_campaign(data)
