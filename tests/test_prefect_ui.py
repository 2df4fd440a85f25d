"""Issue 6, acceptance 1: a real Prefect server on loopback, a short simulated campaign run against it by the
``crucible`` CLI, and the Prefect UI opened in headless Chromium showing the campaign's flow run and its table
artifact; screenshots are written (under the test's tmp dir, copied to ``runs/screenshots/``).

The UI is a JavaScript single-page app: Chromium runs it with ``--virtual-time-budget`` (virtual time does not
advance while requests to the API are pending) and the test reads the rendered DOM, retrying with a longer budget
until the expected text is there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from flows.server import PrefectServer
from tests.conftest import example_campaign

ROOT = Path(__file__).parent.parent
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
INSTALL_HINT = "apt-get install -y chromium chromium-driver   (`make test` does this when chromium is missing)"


def chromium() -> str:
    """The headless browser's path; a clear failure (never a silent skip) when it is not installed."""
    for candidate in (os.environ.get("CRUCIBLE_CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail(f"Chromium is needed to check the Prefect UI and is not installed: {INSTALL_HINT}", pytrace=False)


def browse(
    url: str, profile: Path, *, dump_dom: bool = False, screenshot: Path | None = None, budget_ms: int = 10_000
) -> str:
    """Load ``url`` in headless Chromium; return the rendered DOM (``dump_dom``) or write a PNG (``screenshot``)."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-quic",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        f"--virtual-time-budget={budget_ms}",
    ]
    if dump_dom:
        command.append("--dump-dom")
    if screenshot is not None:
        command.append(f"--screenshot={screenshot}")
    result = subprocess.run([*command, url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"chromium failed on {url}: {result.stderr[-2000:]}"
    return result.stdout


def visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", dom).split())


def page_text(url: str, profile: Path, expected: list[str]) -> str:
    """The page's visible text once every string of ``expected`` is in it (longer budgets on each try)."""
    text = ""
    for budget_ms in (5_000, 10_000, 20_000, 40_000):
        text = visible_text(browse(url, profile, dump_dom=True, budget_ms=budget_ms))
        if all(item in text for item in expected):
            return text
    missing = [item for item in expected if item not in text]
    pytest.fail(f"{url} does not show {missing}; it shows: {text[:1500]}")


def api(server: PrefectServer, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(f"{server.api_url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def test_prefect_ui_shows_campaign_flow_run_and_table_artifact(tmp_path: Path) -> None:
    chromium()  # fail at once, before minutes of set-up, when the browser is missing
    name = "ui-tour"
    data = example_campaign(
        name=name,
        budget={"experiments": 3, "batch_size": 1},
        planner={"name": "botorch", "initial_experiments": 2, "raw_samples": 32, "num_restarts": 2},
    )
    campaign_file = tmp_path / f"{name}.yaml"
    campaign_file.write_text(yaml.safe_dump(data))
    shots = tmp_path / "screenshots"
    shots.mkdir()
    profile = tmp_path / "chromium-profile"

    with PrefectServer(home=tmp_path / "prefect") as server:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
        env |= {"PREFECT_API_URL": server.api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(ROOT)}
        started = time.monotonic()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "flows.cli",
                "run",
                str(campaign_file),
                "--sim",
                "--runs-dir",
                str(tmp_path / "runs"),
                "--db",
                f"sqlite:///{tmp_path / 'runs' / 'crucible.db'}",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        print(f"campaign ran in {time.monotonic() - started:.1f} s")

        flow_runs = [r for r in api(server, "/flow_runs/filter", {}) if r["name"] == name]
        assert len(flow_runs) == 1 and flow_runs[0]["state_type"] == "COMPLETED", flow_runs
        flow_run_id = flow_runs[0]["id"]
        artifacts = api(server, "/artifacts/filter", {"artifacts": {"key": {"any_": [f"{name}-experiments"]}}})
        # The table is published again as each experiment finishes: one version per update, the newest on top.
        assert artifacts and all(artifact["type"] == "table" for artifact in artifacts)
        artifact_id = max(artifacts, key=lambda artifact: artifact["created"])["id"]

        task_runs = api(server, "/task_runs/count", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
        assert task_runs >= 3 * 3 + 3  # at least a plan and three steps per experiment

        # The flow run's page: its name, its state, its flow and the count of its task runs.
        run_page = f"{server.ui_url}/runs/flow-run/{flow_run_id}"
        text = page_text(run_page, profile, [name, "Completed", "crucible-campaign", f"{task_runs} Task runs"])
        assert f"Flow Run: {name}" in text
        browse(run_page, profile, screenshot=shots / f"{name}-flow-run.png")

        # The artifacts page lists the campaign's table and report by key ...
        page_text(f"{server.ui_url}/artifacts", profile, [f"{name}-experiments", f"{name}-report", "table"])
        # ... and the table artifact's own page shows the experiments, linked to the campaign's flow run.
        artifact_page = f"{server.ui_url}/artifacts/artifact/{artifact_id}"
        text = page_text(
            artifact_page,
            profile,
            [
                f"{name}-experiments",
                "3 Items",
                "anatase_crystallite_size_nm",
                "anneal_temperature_c",
                "analysed",
                f"Flow Run {name}",
            ],
        )
        assert text.count("analysed") >= 3
        browse(artifact_page, profile, screenshot=shots / f"{name}-experiments-artifact.png")

    for png in sorted(shots.glob("*.png")):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, png
    kept = ROOT / "runs" / "screenshots"
    kept.mkdir(parents=True, exist_ok=True)
    for png in shots.glob("*.png"):
        shutil.copy2(png, kept / png.name)
    assert len(list(shots.glob("*.png"))) == 2
