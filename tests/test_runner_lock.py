"""Issue 16, acceptance 3: one runner per campaign. Two `crucible run` of one campaign started at once, on SQLite
and on PostgreSQL: one runs, the other exits non-zero with one line naming the runner; the database holds exactly
the budget, with no duplicate conditions. A crashed runner's lock does not block a resume."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from orchestrator.runner_lock import CampaignLocked, RunnerLock, RunnerLockRecord
from orchestrator.store import Store
from tests.conftest import example_campaign, start_crucible

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.usefixtures("prefect_api_env")  # one Prefect server for the CLI runs
BUDGET = 4


def two_runners_at_once(tmp_path: Path, url: str) -> None:
    data = example_campaign(
        name="contested", budget={"experiments": BUDGET, "batch_size": 1}, planner={"name": "sobol"}
    )
    data["simulation"]["time_factor"] = 1e-4
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data))
    command = ["run", str(path), "--sim", "--db", url, "--runs-dir", "runs"]
    runners = [start_crucible(*command, cwd=tmp_path) for _ in range(2)]
    results = [(r.wait(timeout=300), *r.communicate()) for r in runners]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    _, _, refused = next(result for result in results if result[0] == 1)
    lines = [line for line in refused.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in refused, refused
    assert lines[0].startswith("error: campaign 'contested' is already being run by process"), refused
    assert socket.gethostname() in lines[0]

    store = Store(url)
    record = store.campaign_by_name("contested")
    assert record is not None
    experiments = store.experiments(record.id)
    assert len(experiments) == BUDGET and all(e.status == "analysed" for e in experiments)
    conditions = {json.dumps(e.conditions, sort_keys=True) for e in experiments}
    assert len(conditions) == BUDGET, "no experiment was planned twice"
    with store.session() as session:
        assert session.get(RunnerLockRecord, "contested") is None, "the lock is given back at the end"
    store.close()


def test_two_runners_on_sqlite(tmp_path: Path) -> None:
    two_runners_at_once(tmp_path, f"sqlite:///{tmp_path / 'runs' / 'crucible.db'}")


def test_two_runners_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    two_runners_at_once(tmp_path, postgres_url)


def plant_lock(store: Store, holder: str, age_s: float) -> None:
    now = datetime.now(UTC)
    RunnerLock(store, "planted")  # the table exists once a lock has been asked for
    RunnerLockRecord.metadata.create_all(store.engine, tables=[RunnerLockRecord.__table__])  # type: ignore[attr-defined]
    stamp = now - timedelta(seconds=age_s)
    store.add(RunnerLockRecord(campaign_name="planted", holder=holder, heartbeat_at=stamp, acquired_at=stamp))


def test_a_live_holder_is_refused_a_dead_or_silent_one_taken_over(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    plant_lock(store, "other-host:4242:abcd", age_s=1.0)  # alive elsewhere: heartbeat 1 s ago
    with pytest.raises(CampaignLocked, match="process 4242 on other-host"):
        RunnerLock(store, "planted").acquire()

    with store.session() as session:
        session.delete(session.get(RunnerLockRecord, "planted"))
        session.commit()
    plant_lock(store, "other-host:4242:abcd", age_s=120.0)  # its heartbeat stopped two minutes ago
    with RunnerLock(store, "planted") as lock:
        assert store.session().__enter__().get(RunnerLockRecord, "planted").holder == lock.holder  # type: ignore[union-attr]

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    plant_lock(store, f"{socket.gethostname()}:{dead.stdout.strip()}:dead", age_s=0.0)  # killed -9 a moment ago
    with RunnerLock(store, "planted"), RunnerLock(Store(store.url), "planted"):  # re-entrant in one process
        pass
    store.close()
