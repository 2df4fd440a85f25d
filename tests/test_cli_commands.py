"""The CLI's lab commands: emergency stop of every instrument of a campaign, key generation, analysing a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from instruments.client import InstrumentClient
from orchestrator.simulated_lab import SimulatedLab
from orchestrator.spec import parse_campaign
from sim_lab.datasets import brookite, measured_set
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


def test_stop_and_reset_reach_instruments_secured_with_curvezmq(tmp_path: Path) -> None:
    from instruments.keys import generate_keypair

    keys = tmp_path / "keys"
    for name in ("orchestrator", "furnace", "xrd"):
        generate_keypair(keys, name)
    data = example_campaign(name="secured", client_key=str(keys / "orchestrator.key_secret"))
    for name, instrument in data["instruments"].items():
        instrument["server_key"] = str(keys / f"{name}.key")
    path = tmp_path / "secured.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = parse_campaign(data)
    xrd = spec.instruments["xrd"].address
    with SimulatedLab(spec, tmp_path / "tray"):
        plain = crucible("stop", "--address", xrd, "--timeout", "0.5", cwd=tmp_path)
        assert plain.returncode == 2 and "NOT confirmed" in plain.stdout  # no keys: the server never answers
        result = crucible("stop", str(path), "--all", cwd=tmp_path)  # the keys the campaign file names
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count(": stopped") == 2
        one = crucible(
            "reset", "--address", xrd, "--client-key", str(keys / "orchestrator.key_secret"),
            "--server-key", str(keys / "xrd.key"), cwd=tmp_path,
        )
        assert one.returncode == 0 and f"{xrd}: reset" in one.stdout, one.stdout + one.stderr
        half = crucible("reset", "--address", xrd, "--server-key", str(keys / "xrd.key"), cwd=tmp_path)
        assert half.returncode == 1 and "give both --client-key and --server-key" in half.stderr
        assert "Traceback" not in half.stderr


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


def test_analyse_a_pattern_file_with_the_fit_and_with_identification(tmp_path: Path) -> None:
    sample = measured_set("tio2_calcination", 1, seed=91)[0]
    path = tmp_path / "scan.xye"
    rows = zip(sample.pattern.two_theta_deg, sample.pattern.counts, strict=True)
    path.write_text("# anode: Cu\n" + "\n".join(f"{x:.4f} {y:.0f} {max(y, 1.0) ** 0.5:.2f}" for x, y in rows))
    fitted = crucible("analyse", str(path), "--json", cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr
    quantities = json.loads(fitted.stdout)
    assert quantities["rutile_fraction"]["value"] == pytest.approx(sample.quantities["rutile_fraction"], abs=0.02)
    assert quantities["rutile_fraction"]["std"] > 0
    assert quantities["warnings"][0].startswith("no --phase given")  # the default phase list is said, not silent
    brookite().to(filename=str(tmp_path / "brookite.cif"))
    identified = crucible(
        "analyse", str(path), "-a", "identify", "-p", "anatase", "-p", "rutile", "-p", "brookite.cif", cwd=tmp_path
    )
    assert identified.returncode == 0, identified.stderr
    assert "unknown_phase" in identified.stdout and "anatase_fraction" in identified.stdout


def test_analyse_names_what_is_wrong_with_its_input(tmp_path: Path) -> None:
    garbled = tmp_path / "garbled.xy"
    garbled.write_text("two theta, counts\nnot numbers at all\n")
    for args, expected in (
        (["analyse", str(tmp_path / "missing.xy")], "no such file"),
        (["analyse", str(garbled), "-r", "Cu"], "garbled.xy"),
        (["analyse", str(garbled), "-a", "guess"], "unknown analysis 'guess'"),
        (["analyse", str(garbled), "-r", "Cu", "-p", str(tmp_path / "nothing.cif")], "nothing.cif: no such file"),
    ):
        result = crucible(*args, cwd=tmp_path)
        assert result.returncode == 1, args
        assert result.stderr.startswith("error:") and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
