"""Crash safety: SIGKILL the whole process group (campaign and its simulated instrument servers) at random moments,
resume each time, and lose or repeat nothing.

``crucible run --sim`` starts the simulated instruments as its own child processes, as a lab PC might; every kill
takes them down with the campaign. Each server keeps its job history in a SQLite journal in the sample tray, so a
restarted server answers for jobs it ran before, and logs every job start to its own log file: the test counts the
starts there.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from instruments.jobs import INTERRUPTED
from orchestrator.store import ExperimentStatus, Store
from tests.conftest import example_campaign

ROOT = Path(__file__).parent.parent
KILLS = 20
BUDGET = 12
JOB_STARTED = re.compile(r"job '([^']+)' started")


def job_starts(log_dir: Path) -> Counter[str]:
    """How often each job id was started, from every instrument server's own log."""
    started: Counter[str] = Counter()
    for log in log_dir.glob("*.log"):
        started.update(JOB_STARTED.findall(log.read_text(encoding="utf-8", errors="replace")))
    return started


def progress(runs_dir: Path) -> tuple[tuple[int, str], ...]:
    """Every experiment's (index, status): changes whenever the campaign records a step (read-only look)."""
    database = runs_dir / "crucible.db"
    if not database.exists():
        return ()
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            rows = connection.execute("SELECT e.\"index\", e.status FROM experiment e ORDER BY e.\"index\"")
            return tuple(rows.fetchall())
    except sqlite3.OperationalError:  # the tables are not there yet
        return ()
    except sqlite3.DatabaseError:
        # a read-only look may catch the file mid-write by a process just killed, before the next writer has
        # recovered its write-ahead log; the campaign's own connections recover it (checked at the end)
        return ()


def test_sigkill_of_the_process_group_at_random_points_then_resume(tmp_path: Path, prefect_harness: None) -> None:
    from prefect.settings import PREFECT_API_URL

    data = example_campaign(
        name="crash",
        budget={"experiments": BUDGET, "batch_size": 1},
        planner={"name": "botorch", "initial_experiments": 4, "raw_samples": 32, "num_restarts": 2},
    )
    data["simulation"].update(seed=3, time_factor=3e-5)
    campaign_file = tmp_path / "crash.yaml"
    campaign_file.write_text(yaml.safe_dump(data))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    runs_dir = tmp_path / "runs"
    crucible = [sys.executable, "-m", "flows.cli"]
    command = [*crucible, "run", str(campaign_file), "--sim", "--runs-dir", str(runs_dir)]
    rng = random.Random(20)
    kills, exits = 0, []
    while True:
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: the campaign and the servers it starts
        )
        if kills < KILLS:
            # Kill at a random moment shortly after the campaign next records progress, so every kill lands
            # mid-campaign (between or inside steps) rather than while Python is still importing.
            before = progress(runs_dir)
            while process.poll() is None and progress(runs_dir) == before:
                time.sleep(0.02)
            deadline = time.monotonic() + rng.uniform(0.0, 0.4)
        else:
            deadline = time.monotonic() + 600.0
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
        else:
            stderr = process.stderr.read() if process.stderr else ""
            exits.append((process.returncode, stderr))
            if process.returncode == 0:
                break
            # A run killed before its first experiment leaves a campaign to resume, not to re-run.
            assert "crucible resume crash" in stderr or "no campaign named" in stderr, stderr
        command = [*crucible, "resume", "crash", "--sim", "--runs-dir", str(runs_dir)]
        if not Store(f"sqlite:///{runs_dir / 'crucible.db'}").campaign_by_name("crash"):
            command = [*crucible, "run", str(campaign_file), "--sim", "--runs-dir", str(runs_dir)]

    assert kills == KILLS
    store = Store(f"sqlite:///{runs_dir / 'crucible.db'}")
    record = store.campaign_by_name("crash")
    assert record is not None and record.status == "finished"
    experiments = store.experiments(record.id)
    assert [e.index for e in experiments] == list(range(BUDGET)), "experiments lost or duplicated"
    assert len({e.sample_id for e in experiments}) == BUDGET
    interrupted = 0
    for experiment in experiments:
        assert experiment.status in ExperimentStatus.TERMINAL
        if experiment.status == ExperimentStatus.FAILED:
            assert experiment.failure_reason
            interrupted += INTERRUPTED in experiment.failure_reason  # interrupted three times
        else:
            assert store.step_result(experiment.id, "synthesis") and store.step_result(experiment.id, "xrd")
            assert "xrd" in store.step_analyses(experiment.id)
    # Every instrument job ran once at most, counted from the servers' own logs: neither a resumed campaign nor
    # a restarted server started one again.
    started = job_starts(runs_dir / "tray" / "crash" / "logs")
    repeated = {job: n for job, n in started.items() if n > 1}
    assert not repeated, f"instrument jobs started more than once: {repeated}"
    analysed = [e for e in experiments if e.status == ExperimentStatus.ANALYSED]
    assert sum(1 for job in started if job.endswith("-synthesis")) >= len(analysed)
    print(f"{kills} kills: {len(analysed)} analysed, {interrupted} failed as interrupted, {len(started)} job starts")
