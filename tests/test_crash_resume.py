"""Crash safety: SIGKILL the campaign process at random moments, resume each time, and lose or repeat nothing.

The simulated instruments run as their own server processes for the whole test (as real instruments would keep
running while the orchestrator host crashes); each publishes its state changes, so the test counts how many times
every instrument job actually started.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import yaml

from instruments.events import EventSubscriber
from orchestrator.store import ExperimentStatus, Store
from tests.conftest import example_campaign, free_tcp_address

ROOT = Path(__file__).parent.parent
KILLS = 20
BUDGET = 16


def start_instrument(kind: str, address: str, events: str, tray: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sim_lab.serve",
            "--instrument",
            kind,
            "--scenario",
            "tio2_calcination",
            "--address",
            address,
            "--events-address",
            events,
            "--tray",
            str(tray),
            "--seed",
            "3",
            "--time-factor",
            "3e-5",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None and process.stdout.readline().startswith("serving")
    return process


def collect_job_starts(events_addresses: list[str], started: Counter[str], stop: threading.Event) -> None:
    subscribers = [EventSubscriber(address, topics=("state",)) for address in events_addresses]
    try:
        while not stop.is_set():
            for subscriber in subscribers:
                event = subscriber.next(timeout_s=0.05)
                if event and event["data"].get("state") == "busy" and event["data"].get("job_id"):
                    started[event["data"]["job_id"]] += 1
    finally:
        for subscriber in subscribers:
            subscriber.close()


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


def test_sigkill_at_random_points_then_resume(tmp_path: Path, prefect_harness: None) -> None:
    from prefect.settings import PREFECT_API_URL

    data = example_campaign(
        name="crash",
        budget={"experiments": BUDGET, "batch_size": 1},
        planner={"name": "botorch", "initial_experiments": 4, "raw_samples": 32, "num_restarts": 2},
    )
    data.pop("simulation")
    campaign_file = tmp_path / "crash.yaml"
    campaign_file.write_text(yaml.safe_dump(data))
    events = {name: free_tcp_address() for name in data["instruments"]}
    servers = [
        start_instrument(spec["kind"], spec["address"], events[name], tmp_path / "tray")
        for name, spec in data["instruments"].items()
    ]
    started: Counter[str] = Counter()
    stop = threading.Event()
    listener = threading.Thread(target=collect_job_starts, args=(list(events.values()), started, stop), daemon=True)
    listener.start()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    runs_dir = tmp_path / "runs"
    rng = random.Random(20)
    kills, exits = 0, []
    try:
        command = [sys.executable, "-m", "flows.cli", "run", str(campaign_file), "--runs-dir", str(runs_dir)]
        while True:
            process = subprocess.Popen(
                command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
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
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
            else:
                stderr = process.stderr.read() if process.stderr else ""
                exits.append((process.returncode, stderr))
                if process.returncode == 0:
                    break
                # A run killed before its first experiment leaves a campaign to resume, not to re-run.
                assert "crucible resume crash" in stderr or "no campaign named" in stderr, stderr
            command = [sys.executable, "-m", "flows.cli", "resume", "crash", "--runs-dir", str(runs_dir)]
            if not Store(f"sqlite:///{runs_dir / 'crucible.db'}").campaign_by_name("crash"):
                command = [sys.executable, "-m", "flows.cli", "run", str(campaign_file), "--runs-dir", str(runs_dir)]
    finally:
        time.sleep(0.5)
        stop.set()
        listener.join()
        for server in servers:
            server.terminate()
            server.wait()

    assert kills == KILLS
    store = Store(f"sqlite:///{runs_dir / 'crucible.db'}")
    record = store.campaign_by_name("crash")
    assert record is not None and record.status == "finished"
    experiments = store.experiments(record.id)
    assert [e.index for e in experiments] == list(range(BUDGET)), "experiments lost or duplicated"
    assert len({e.sample_id for e in experiments}) == BUDGET
    for experiment in experiments:
        assert experiment.status in ExperimentStatus.TERMINAL
        if experiment.status == ExperimentStatus.FAILED:
            assert experiment.failure_reason
        else:
            assert store.sample(experiment.id) and store.reading(experiment.id) and store.analysis(experiment.id)
    # Every instrument job ran once at most: none was started twice by a resumed campaign.
    repeated = {job: n for job, n in started.items() if n > 1}
    assert not repeated, f"instrument jobs started more than once: {repeated}"
    analysed = [e for e in experiments if e.status == ExperimentStatus.ANALYSED]
    assert sum(1 for job in started if job.endswith("-synthesis")) >= len(analysed)
