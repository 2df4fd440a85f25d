"""Issue 6, acceptance 4: the scale-out path on Prefect's own engine.

A Prefect server on PostgreSQL, the campaign database on PostgreSQL (each a fresh database, dropped afterwards),
the simulated lab's instrument servers, and two Prefect process workers in separate processes started by
``crucible worker``; ``crucible deploy --run`` registers the campaign and starts it. The coordinator flow run
lands on one worker, the experiments' flow runs on both: the campaign ends with exactly its budget of
experiments, none duplicated, and both workers' names are on experiment flow runs.

With worker limits of 2 flow runs each and 3 experiments under way, the 3 free slots (4, less the coordinator's)
can only be filled by both workers, so the split is not left to chance.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlmodel import select

from flows.deploy import COORDINATOR_FLOW, EXPERIMENT_FLOW
from flows.server import PrefectServer, _die_with_parent
from orchestrator.simulated_lab import SimulatedLab
from orchestrator.spec import parse_campaign
from orchestrator.store import StepResultRecord, Store
from tests.conftest import example_campaign, free_tcp_address

ROOT = Path(__file__).parent.parent
POSTGRES = os.environ.get("CRUCIBLE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
START_HINT = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
BUDGET = 6
PARALLEL = 3


def admin_connection() -> Any:
    import psycopg2

    try:
        connection = psycopg2.connect(f"{POSTGRES}/postgres", connect_timeout=5)
    except psycopg2.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is needed at {POSTGRES} (CRUCIBLE_TEST_POSTGRES) and does not answer: "
            f"{str(error).strip()}; start it with: {START_HINT}",
            pytrace=False,
        )
    connection.autocommit = True  # CREATE / DROP DATABASE cannot run inside a transaction
    return connection


@pytest.fixture()
def postgres_databases() -> Iterator[tuple[str, str]]:
    """Two fresh, empty databases (Prefect's, the campaign's) as ``(name, name)``; dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    names = (f"crucible_test_prefect_{suffix}", f"crucible_test_campaign_{suffix}")
    connection = admin_connection()
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield names
    finally:
        with connection.cursor() as cursor:
            for name in names:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.close()


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group we started (the worker and any flow run it still has), then SIGKILL."""
    for signum, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            if signum == signal.SIGTERM:
                os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def api(server: PrefectServer, path: str, body: dict[str, Any] | None = None) -> Any:
    response = httpx.post(f"{server.api_url}{path}", json=body or {}, timeout=30)
    response.raise_for_status()
    return response.json()


def flow_runs_of(server: PrefectServer, flow_name: str) -> list[dict[str, Any]]:
    return api(server, "/flow_runs/filter", {"flows": {"name": {"any_": [flow_name]}}, "limit": 200})


def test_two_workers_share_one_campaign_on_postgresql(tmp_path: Path, postgres_databases: tuple[str, str]) -> None:
    prefect_db, campaign_db = postgres_databases
    campaign_url = f"{POSTGRES.replace('postgresql://', 'postgresql+psycopg2://')}/{campaign_db}"
    name = "scale-out"
    data = example_campaign(
        name=name,
        budget={"experiments": BUDGET, "batch_size": 1},
        planner={"name": "botorch", "initial_experiments": 4, "raw_samples": 32, "num_restarts": 2},
    )
    # Two furnaces and one diffractometer, with jobs that take real (if short) time: experiments on different
    # workers compete for the instruments, which Prefect's concurrency limits hand out one job at a time.
    data["instruments"]["furnace-2"] = {**data["instruments"]["furnace"], "address": free_tcp_address()}
    data["simulation"]["time_factor"] = 5e-5
    spec = parse_campaign(data)
    campaign_file = tmp_path / f"{name}.yaml"
    campaign_file.write_text(yaml.safe_dump(data))
    pool = "crucible-test"
    crucible = [sys.executable, "-m", "flows.scale_cli"]
    workers: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()

    with (
        PrefectServer(database_url=f"{POSTGRES}/{prefect_db}", home=tmp_path / "prefect") as server,
        SimulatedLab(spec, tmp_path / "tray"),
    ):
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "CRUCIBLE_"))}
        env |= {"PREFECT_API_URL": server.api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(ROOT)}
        try:
            for worker in ("worker-a", "worker-b"):
                workers.append(
                    start(
                        [*crucible, "worker", "--pool", pool, "--name", worker, "--limit", "2", "--poll-seconds", "1"],
                        env,
                        tmp_path / f"{worker}.log",
                    )
                )
            deploy = subprocess.run(
                [
                    *crucible,
                    "deploy",
                    str(campaign_file),
                    "--pool",
                    pool,
                    "--db",
                    campaign_url,
                    "--parallel",
                    str(PARALLEL),
                    "--run",
                ],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert deploy.returncode == 0, deploy.stdout + deploy.stderr
            found = re.search(r"id ([0-9a-f-]{36})", deploy.stdout)
            assert found, deploy.stdout
            coordinator_id = found.group(1)

            deadline = time.monotonic() + 300
            while True:
                coordinator = httpx.get(f"{server.api_url}/flow_runs/{coordinator_id}", timeout=30).json()
                if coordinator["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                    break
                for worker, process in zip(("worker-a", "worker-b"), workers, strict=True):
                    log = (tmp_path / f"{worker}.log").read_text(errors="replace")[-3000:]
                    assert process.poll() is None, f"{worker} exited {process.returncode}:\n{log}"
                assert time.monotonic() < deadline, f"campaign still {coordinator['state_type']} after 300 s"
                time.sleep(2)
            print(f"campaign of {BUDGET} experiments on two workers done in {time.monotonic() - started:.0f} s")
            logs = "\n".join(
                (tmp_path / f"{w}.log").read_text(errors="replace")[-3000:] for w in ("worker-a", "worker-b")
            )
            assert coordinator["state_type"] == "COMPLETED", f"{coordinator['state']}\n{logs}"

            # Prefect's record: one coordinator run, one completed flow run per experiment, on both workers.
            [coordinator_run] = flow_runs_of(server, COORDINATOR_FLOW)
            assert coordinator_run["name"] == name
            experiment_runs = flow_runs_of(server, EXPERIMENT_FLOW)
            assert sorted(run["name"] for run in experiment_runs) == [f"{name}-{i:03d}" for i in range(BUDGET)]
            assert all(run["state_type"] == "COMPLETED" for run in experiment_runs), experiment_runs
            assert all(run["parent_task_run_id"] for run in experiment_runs)  # subflows of the coordinator
            worker_of = {run["name"]: run["labels"].get("prefect.worker.name") for run in experiment_runs}
            assert set(worker_of.values()) == {"worker-a", "worker-b"}, worker_of
            assert coordinator_run["labels"].get("prefect.worker.name") in {"worker-a", "worker-b"}
            # Each experiment ran in a process of its own, and says so in its log.
            messages = [
                entry["message"]
                for entry in api(
                    server,
                    "/logs/filter",
                    {"logs": {"flow_run_id": {"any_": [run["id"] for run in experiment_runs]}}, "limit": 200},
                )
            ]
            lines = [m for m in messages if m.startswith(f"experiment {name}-") and " pid " in m]
            assert len(lines) == BUDGET, messages
            assert len({re.search(r"pid (\d+)", line).group(1) for line in lines}) == BUDGET  # type: ignore[union-attr]
            assert {re.search(r"worker (\S+)$", line).group(1) for line in lines} == {"worker-a", "worker-b"}  # type: ignore[union-attr]
            # Never two jobs at once on one instrument: the step task runs on each instrument do not overlap.
            step_runs = api(
                server,
                "/task_runs/filter",
                {"flow_runs": {"id": {"any_": [run["id"] for run in experiment_runs]}}, "limit": 200},
            )
            by_instrument: dict[str, list[tuple[datetime, datetime]]] = {}
            for task_run in step_runs:
                for tag in task_run["tags"]:
                    if tag.startswith("instrument:"):
                        interval = (
                            datetime.fromisoformat(task_run["start_time"]),
                            datetime.fromisoformat(task_run["end_time"]),
                        )
                        by_instrument.setdefault(tag, []).append(interval)
            assert set(by_instrument) == {"instrument:furnace", "instrument:furnace-2", "instrument:xrd"}, by_instrument
            assert sum(len(v) for v in by_instrument.values()) == 2 * BUDGET
            for tag, intervals in by_instrument.items():
                intervals.sort()
                for (_, end), (start_next, _) in pairwise(intervals):
                    assert end <= start_next, f"two jobs at once on {tag}: {intervals}"
            artifacts = {a["key"] for a in api(server, "/artifacts/filter")}
            assert {f"{name}-experiments", f"{name}-report"} <= artifacts
        finally:
            for process in workers:
                stop(process)

    # The campaign's record: exactly the budget, none lost, none duplicated, every sample made and measured once.
    store = Store(campaign_url)
    try:
        record = store.campaign_by_name(name)
        assert record is not None and record.status == "finished"
        experiments = store.experiments(record.id)
        assert [e.index for e in experiments] == list(range(BUDGET))
        assert all(e.status == "analysed" for e in experiments), [
            (e.index, e.status, e.failure_reason) for e in experiments
        ]
        assert len({e.sample_id for e in experiments}) == BUDGET
        assert len({e.conditions_json for e in experiments}) == BUDGET
        assert {run["parameters"]["experiment_id"] for run in experiment_runs} == {e.id for e in experiments}
        with store.session() as session:
            results = list(session.exec(select(StepResultRecord)))
        samples = [r for r in results if r.step == "synthesis"]
        readings = [r for r in results if r.step == "xrd" and r.reading_kind == "diffractogram"]
        assert sorted(s.experiment_id for s in samples) == sorted(e.id for e in experiments)
        assert {s.instrument for s in samples} == {"furnace", "furnace-2"}
        assert sorted(r.experiment_id for r in readings) == sorted(e.id for e in experiments)
        strategies = [store.proposal(e.id).strategy for e in experiments]  # type: ignore[union-attr]
        # The first four are the Sobol design; later ones are the model's, or Sobol while nothing is finished
        # yet to learn from (the planner saw the experiments under way as pending points either way).
        assert strategies[:4] == ["sobol"] * 4 and set(strategies) <= {"sobol", "qLogNEI"}, strategies
    finally:
        store.close()
