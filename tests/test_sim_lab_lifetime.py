"""Issue 16: simulated instrument servers die with the process that started them. After `kill -9` of
`crucible run --sim` its servers exit and free their ports, so `crucible resume --sim` starts at once; SIGTERM to
`crucible sim` stops its servers too."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.store import Store
from tests.conftest import crucible, example_campaign, start_crucible

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.usefixtures("prefect_api_env")  # one Prefect server for the CLI runs


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")


def wait_gone(pids: list[int], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"servers still running: {[p for p in pids if alive(p)]}"
        time.sleep(0.1)


def campaign_file(tmp_path: Path, name: str) -> Path:
    data = example_campaign(name=name, budget={"experiments": 3, "batch_size": 1}, planner={"name": "sobol"})
    data["simulation"]["time_factor"] = 3e-4
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_kill_9_of_a_run_takes_its_servers_with_it_and_resume_starts(tmp_path: Path) -> None:
    path = campaign_file(tmp_path, "orphans")
    url = f"sqlite:///{tmp_path / 'runs' / 'crucible.db'}"
    run = start_crucible("run", str(path), "--sim", "--runs-dir", "runs", cwd=tmp_path)
    deadline = time.monotonic() + 180
    while True:
        store = Store(url)
        record = store.campaign_by_name("orphans")
        made = record is not None and any(e.status != "planned" for e in store.experiments(record.id))
        store.close()
        if made:
            break
        assert time.monotonic() < deadline and run.poll() is None, run.communicate()
        time.sleep(0.2)
    servers = [pid for pid in children(run.pid) if "sim_lab.serve" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(servers) == 2, servers
    run.kill()
    run.wait()
    wait_gone(servers)
    resumed = crucible("resume", "orphans", "--sim", "--runs-dir", "runs", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "best conditions found" in resumed.stdout


def test_sigterm_to_crucible_sim_stops_its_servers(tmp_path: Path) -> None:
    path = campaign_file(tmp_path, "served")
    sim = start_crucible("sim", str(path), "--runs-dir", "runs", cwd=tmp_path)
    assert sim.stdout is not None
    pids = []
    for line in sim.stdout:
        if ": pid " in line:
            pids.append(int(line.split(": pid ")[1].split()[0]))
        if "simulated lab running" in line:
            break
    assert len(pids) == 2, pids
    sim.send_signal(signal.SIGTERM)
    assert sim.wait(timeout=30) == 0
    wait_gone(pids)
