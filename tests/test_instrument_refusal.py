"""Issue 16, acceptance 1: a campaign owns its instruments. It holds a lease on each while it runs, so another
client cannot take them; a lease held by someone else stops it before it starts, with one line; an emergency stop
during the campaign pauses it with the reason and how to clear it, and fails no experiment; after `crucible reset`,
`crucible resume` completes the budget. Real instrument server processes, the real CLI."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from instruments.client import InstrumentClient
from instruments.errors import LeaseError
from orchestrator.simulated_lab import SimulatedLab
from orchestrator.spec import parse_campaign
from orchestrator.store import Store
from tests.conftest import crucible, example_campaign, start_crucible

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.usefixtures("prefect_api_env")  # one Prefect server for the CLI runs
BUDGET = 4


def counts(url: str, name: str) -> dict[str, int]:
    store = Store(url)
    try:
        record = store.campaign_by_name(name)
        out: dict[str, int] = {}
        for experiment in store.experiments(record.id) if record else []:
            out[experiment.status] = out.get(experiment.status, 0) + 1
        return out
    finally:
        store.close()


def test_leases_refusals_and_an_emergency_stop(tmp_path: Path) -> None:
    data = example_campaign(name="owned", budget={"experiments": BUDGET, "batch_size": 1}, planner={"name": "sobol"})
    data["simulation"]["time_factor"] = 3e-4  # an anneal of hours takes a few seconds: a stop lands mid-job
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = parse_campaign(data)
    url = f"sqlite:///{tmp_path / 'runs' / 'crucible.db'}"
    with SimulatedLab(spec, tmp_path / "tray"):  # as `crucible sim FILE` serves it, in another terminal
        xrd = spec.instruments["xrd"].address
        with InstrumentClient(xrd, timeout_s=2.0, holder="someone else") as other:
            other.acquire_lease(60.0)
            refused = crucible("run", str(path), "--runs-dir", "runs", cwd=tmp_path)
            assert refused.returncode == 1, refused.stdout
            assert refused.stderr.startswith("error: campaign 'owned' cannot start: instrument 'xrd'"), refused.stderr
            assert "someone else" in refused.stderr and "Traceback" not in refused.stderr
            other.release_lease()

        run = start_crucible("run", str(path), "--runs-dir", "runs", cwd=tmp_path)
        try:
            deadline = time.monotonic() + 180
            while counts(url, "owned").get("analysed", 0) < 1:
                assert time.monotonic() < deadline and run.poll() is None, run.communicate()
                time.sleep(0.2)
            with InstrumentClient(xrd, timeout_s=2.0, holder="someone else") as other:
                with pytest.raises(LeaseError):
                    other.acquire_lease(60.0)  # the campaign holds its instruments
            stopped = crucible("stop", str(path), "--all", cwd=tmp_path)
            assert stopped.returncode == 0, stopped.stdout
            out, err = run.communicate(timeout=180)
        finally:
            if run.poll() is None:
                run.kill()
        assert run.returncode == 0, err
        assert "paused after" in out and "refused experiment" in out and "crucible reset --address" in out, out
        assert "crucible resume owned" in out
        state = counts(url, "owned")
        assert "failed" not in state, state
        assert sum(state.values()) < BUDGET or state.get("analysed", 0) < BUDGET, state

        status = crucible("status", "--runs-dir", "runs", cwd=tmp_path)
        assert "owned: paused" in status.stdout, status.stdout
        cleared = crucible("reset", str(path), "--all", cwd=tmp_path)
        assert cleared.returncode == 0 and cleared.stdout.count(": reset") == 2, cleared.stdout
        resumed = crucible("resume", "owned", "--runs-dir", "runs", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
    assert counts(url, "owned") == {"analysed": BUDGET}
