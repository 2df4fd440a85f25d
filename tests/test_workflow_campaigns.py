"""Workflows as data: campaigns whose samples go through other steps than furnace -> XRD.

- Each shipped workflow campaign (nanoparticles: synthesis -> SAXS -> PDF; multi-modal: synthesis -> XRD -> XAS)
  runs through ``crucible run --sim`` (real instrument server processes, the real scheduler, Prefect), is SIGKILLed
  mid-workflow (the campaign and its servers) and resumed, and loses or repeats nothing: every step ran on its
  instrument, once, and every quantity the objectives and constraints name reached the planner with its variance.
- A technique Crucible does not know (a spin coater and a UV-vis spectrometer, with a band-gap agent), defined in
  this file only, runs a whole campaign: its instruments speak the instrument protocol over real ZeroMQ sockets, its
  agent is registered by name, and nothing in ``orchestrator/`` names it.
"""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from agents.analyses import AnalysisKind, Quantity, register_analysis
from instruments.readings import Spectrum
from instruments.server import InstrumentServer
from orchestrator.campaign import Campaign, measured
from orchestrator.lab import Lab
from orchestrator.scheduler import Scheduler, ThreadExecutor
from orchestrator.spec import CampaignFileError, parse_campaign
from orchestrator.store import ExperimentStatus, Store
from tests.conftest import free_tcp_address
from tests.test_crash_resume import job_starts

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


def _mid_workflow(database: Path) -> bool:
    """Whether some experiment is past its first step but not yet analysed (a read-only look)."""
    if not database.exists():
        return False
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            rows = connection.execute("SELECT status, step FROM experiment").fetchall()
    except sqlite3.DatabaseError:
        return False
    return any(status in ("running", "ran") and (step or 0) >= 1 for status, step in rows)


WORKFLOWS = {
    "ceria_nanoparticles.yaml": {
        "report": "## Pareto front",  # two objectives: the report artifact shows the front
        "route": [
            ("synthesis", "flask", None), ("saxs", "saxs", "scattering_curve"), ("pdf", "pdf", "pair_distribution")
        ],
        "told": ["saxs.radius_nm", "saxs.radius_pd", "saxs.shape_sphere_probability"],
        "without_variance": {"saxs.shape_sphere_probability"},  # its uncertainty is not estimated
        "check": ("pdf.particle_diameter_nm", 0.3, 30.0),
    },
    "mg_zn_ce_phase_map.yaml": {
        "report": "## Phase map: measured shares over the conditions",  # a composition campaign's report shows it
        "route": [("position", "stage", None), ("xrd", "xrd", "diffractogram")],
        "told": ["xrd.periclase_fraction", "xrd.zincite_fraction", "xrd.ceria_fraction"],
        "without_variance": set(),
        "check": ("xrd.n_phases", 0.5, 3.5),
    },
    "ceria_xrd_xas.yaml": {
        "report": None,  # one objective, one share: neither a front nor a map
        "route": [("synthesis", "flask", None), ("xrd", "xrd", "diffractogram"), ("xas", "xas", "spectrum")],
        "told": ["xas.ce3_fraction", "xrd.ceria_crystallite_size_nm"],
        "without_variance": set(),
        "check": ("xas.ce4_fraction", 0.4, 0.96),
    },
}


@pytest.mark.parametrize("example", sorted(WORKFLOWS))
def test_shipped_workflow_campaign_survives_kills_mid_workflow(
    example: str, tmp_path: Path, prefect_harness: None
) -> None:
    """``crucible run FILE --sim``, SIGKILLed twice while a sample is between or inside its measurement steps, then
    ``crucible resume``: every experiment is recorded once, every step ran on its instrument once, and every
    quantity the objectives and constraints name reached the planner with its variance."""
    from prefect.settings import PREFECT_API_URL

    expected = WORKFLOWS[example]
    budget = 5
    data = yaml.safe_load((EXAMPLES / example).read_text())
    data["budget"] = {"experiments": budget}
    data["planner"].update(initial_experiments=4, raw_samples=32, num_restarts=2)
    data["simulation"]["time_factor"] = 3e-4  # a synthesis takes about 2 s, a SAXS or PDF scan a few ms
    if isinstance(data["planner"].get("candidates"), str):  # relative to the shipped file
        data["planner"]["candidates"] = str(EXAMPLES / data["planner"]["candidates"])
    for instrument in data["instruments"].values():
        instrument["address"] = free_tcp_address()
    campaign_file = tmp_path / "np.yaml"
    campaign_file.write_text(yaml.safe_dump(data))
    runs_dir = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    crucible = [sys.executable, "-m", "flows.cli"]
    command = [*crucible, "run", str(campaign_file), "--sim", "--runs-dir", str(runs_dir)]
    kills = 0
    for attempt in range(8):
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True,  # its own process group: the campaign and the servers it starts
        )
        deadline = time.monotonic() + 600
        while process.poll() is None and time.monotonic() < deadline:
            if kills < 2 and _mid_workflow(runs_dir / "crucible.db"):
                time.sleep(0.05 * attempt)
                os.killpg(process.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.02)
        process.wait()
        stderr = process.stderr.read() if process.stderr else ""
        if process.returncode == 0:
            break
        assert process.returncode == -signal.SIGKILL, stderr
        command = [*crucible, "resume", data["name"], "--sim", "--runs-dir", str(runs_dir)]
    assert kills == 2, "the campaign was killed twice mid-workflow"

    store = Store(f"sqlite:///{runs_dir / 'crucible.db'}")
    record = store.campaign_by_name(data["name"])
    assert record is not None and record.status == "finished"
    spec = parse_campaign(data)
    experiments = store.experiments(record.id)
    assert [e.index for e in experiments] == list(range(budget)), "experiments lost or duplicated"
    route = [(step, instrument) for step, instrument, _ in expected["route"]]
    analysed = [e for e in experiments if e.status == ExperimentStatus.ANALYSED]
    assert len(analysed) >= budget - 1, [e.failure_reason for e in experiments]
    for experiment in analysed:
        results = store.step_results(experiment.id)
        assert [(r.step, r.instrument) for r in results] == route, "every step ran on its instrument, in order"
        assert [r.reading_kind for r in results] == [kind for _, _, kind in expected["route"]]
        assert all(r.job_id.startswith(f"{experiment.id}-{r.step}") for r in results)
        assert set(store.step_analyses(experiment.id)) == {step for step, _, kind in expected["route"] if kind}
        name, low, high = expected["check"]
        assert low < experiment.outcomes[name]["value"] < high, (name, experiment.outcomes[name])
    # The campaign's report artifact in the Prefect API: a Pareto front for two objectives, a phase map for a
    # composition campaign, each as an embedded picture.
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        reports = [a for a in client.read_artifacts() if a.key == f"{data['name']}-report"]
    assert reports, "the finished campaign published its report"
    report = str(max(reports, key=lambda a: a.created).data)
    views = ("## Pareto front", "## Phase map: measured shares over the conditions")
    for heading in views:
        if heading == expected["report"]:
            after = report.split(heading, 1)[1]
            assert after.lstrip().startswith("![") and "data:image/png;base64," in after.split("##", 1)[0]
        else:
            assert heading not in report, heading
    started = job_starts(runs_dir / "tray" / data["name"] / "logs")
    repeated = {job: n for job, n in started.items() if n > 1}
    assert not repeated, f"instrument jobs started more than once: {repeated}"

    # Every quantity the objectives and constraints name reached the planner, with its variance.
    with Lab.from_spec(spec) as lab:
        campaign = Campaign(spec, store, lab, record)
        observations = campaign.observations()
    told = [o for o in observations if not o.failed]
    assert len(told) >= len(analysed) - 1  # an experiment whose radius is NaN is told as a failure
    names = expected["told"]
    for observation in told:
        assert set(observation.outcomes) == set(names)
        experiment = next(e for e in analysed if e.conditions == observation.conditions)
        for name in names:
            found = measured(spec, experiment.outcomes, name)
            assert observation.outcomes[name] == found["value"]
            if name in expected["without_variance"]:  # the agent estimates no uncertainty: the planner infers it
                assert not math.isfinite(found["std"]) and name not in observation.variances  # type: ignore[operator]
            else:
                assert observation.variances[name] == pytest.approx(max(found["std"], 1e-9) ** 2)  # type: ignore[index]


# --- a technique Crucible does not know ---------------------------------------------------------------------------
class SpinCoater:
    """Makes a thin film of a two-cation oxide at a composition and an annealing temperature (kind ``spin_coater``)."""

    kind = "spin_coater"

    def __init__(self) -> None:
        self.films: dict[str, dict[str, float]] = {}

    def describe(self) -> dict[str, Any]:
        return {"name": "coater", "kind": self.kind, "parameters": {"sample_id": {"type": "str"}, "conditions": {}}}

    def run(self, params: dict[str, Any], job: Any) -> dict[str, Any]:
        self.films[params["sample_id"]] = dict(params["conditions"])
        return {"sample_id": params["sample_id"], "conditions": params["conditions"]}

    def abort(self) -> None:
        pass


class UVVis:
    """Measures a film's absorbance from 1.5 to 4.5 eV (kind ``uv_vis``); its band gap is
    ``2.0 + 1.5 x + 0.3 (T - 300) / 300`` eV (Tauc edge, a little noise)."""

    kind = "uv_vis"

    def __init__(self, coater: SpinCoater) -> None:
        self.coater = coater

    def describe(self) -> dict[str, Any]:
        return {"name": "uvvis", "kind": self.kind, "parameters": {"sample_id": {"type": "str"}}}

    def run(self, params: dict[str, Any], job: Any) -> dict[str, Any]:
        film = self.coater.films[params["sample_id"]]
        gap = band_gap(film)
        energy = np.linspace(1.5, 4.5, 301)
        rng = np.random.default_rng(abs(hash(params["sample_id"])) % 2**32)
        absorbance = np.sqrt(np.clip(energy - gap, 0.0, None)) + rng.normal(0.0, 0.005, energy.size)
        return {"reading": Spectrum(energy, absorbance, normalised=False, sample_id=params["sample_id"]).as_dict()}

    def abort(self) -> None:
        pass


def band_gap(film: dict[str, float]) -> float:
    return 2.0 + 1.5 * film["x_zn"] + 0.3 * (film["anneal_c"] - 300.0) / 300.0


class TaucOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fit_window_ev: float = 0.6


class TaucAgent:
    """The band gap from a Tauc plot: a straight line through absorbance² above the edge."""

    name = "tauc-band-gap"

    def __init__(self, options: TaucOptions) -> None:
        self.options = options

    def analyse(self, reading: Spectrum) -> Any:
        from agents.xrd_phase_agent import AnalysisReport
        from analysis.phase_quantification import Measurement

        energy, squared = reading.energy_ev, reading.absorption**2
        top = squared.max()
        window = (squared > 0.1 * top) & (squared < 0.1 * top + self.options.fit_window_ev * top / 3)
        (slope, intercept), cov = np.polyfit(energy[window], squared[window], 1, cov=True)
        gap = -intercept / slope
        std = math.sqrt(cov[1, 1] / slope**2 + cov[0, 0] * intercept**2 / slope**4)
        return AnalysisReport(self.name, reading.sample_id, {"band_gap_ev": Measurement(float(gap), float(std))})


TAUC = AnalysisKind(
    name="tauc-band-gap",
    reading_kind="spectrum",
    options=TaucOptions,
    quantities=lambda options: [Quantity("band_gap_ev", "eV")],
    build=TaucAgent,
)


def test_a_new_instrument_kind_and_agent_run_a_campaign_without_touching_crucible(tmp_path: Path) -> None:
    register_analysis(TAUC, replace=True)
    coater = SpinCoater()
    servers = [InstrumentServer(coater, free_tcp_address()), InstrumentServer(UVVis(coater), free_tcp_address())]
    for server in servers:
        server.start()
    try:
        data = {
            "name": "band-gap",
            "budget": {"experiments": 8},
            "parameters": [
                {"name": "x_zn", "low": 0.0, "high": 1.0},
                {"name": "anneal_c", "low": 300.0, "high": 600.0, "unit": "degC"},
            ],
            "workflow": [
                {"name": "coat", "kind": "spin_coater", "conditions": True},
                {"name": "uvvis", "kind": "uv_vis", "analysis": {"agent": "tauc-band-gap"}},
            ],
            "objectives": [{"name": "band_gap_ev", "direction": "target", "target": 2.9}],
            "planner": {"name": "botorch", "initial_experiments": 4, "raw_samples": 64, "num_restarts": 2},
            "instruments": {
                "coater": {"kind": "spin_coater", "address": servers[0].address},
                "uvvis": {"kind": "uv_vis", "address": servers[1].address},
            },
        }
        spec = parse_campaign(data)
        assert list(spec.quantities()) == ["uvvis.band_gap_ev"]
        store = Store(f"sqlite:///{tmp_path / 'c.db'}")
        with Lab.from_spec(spec) as lab:
            assert {d["kind"] for d in lab.check().values()} == {"spin_coater", "uv_vis"}
            campaign = Campaign.open(spec, store, lab)
            executor = ThreadExecutor()
            Scheduler(campaign, executor).run()
            executor.close()
        experiments = campaign.experiments()
        assert [e.status for e in experiments] == [ExperimentStatus.ANALYSED] * 8
        for experiment in experiments:
            found = experiment.outcomes["uvvis.band_gap_ev"]
            assert found["value"] == pytest.approx(band_gap(experiment.conditions), abs=0.05)
            assert 0 < found["std"] < 0.2
        best = campaign.best()
        assert best is not None and abs(best.outcomes["uvvis.band_gap_ev"]["value"] - 2.9) < 0.1
    finally:
        for server in servers:
            server.close()
    orchestrator = (ROOT / "orchestrator").rglob("*.py")
    assert not any("uv_vis" in path.read_text() or "tauc" in path.read_text() for path in orchestrator)


def test_workflow_file_errors_name_the_step() -> None:
    register_analysis(TAUC, replace=True)
    base = {
        "name": "w",
        "budget": {"experiments": 2},
        "parameters": [{"name": "x_zn", "low": 0.0, "high": 1.0}],
        "objectives": [{"name": "band_gap_ev"}],
        "instruments": {
            "coater": {"kind": "spin_coater", "address": free_tcp_address()},
            "uvvis": {"kind": "uv_vis", "address": free_tcp_address()},
        },
    }
    coat = {"name": "coat", "kind": "spin_coater", "conditions": True}
    cases = [
        ([coat, {"name": "uvvis", "kind": "uv_vis", "analysis": {"agent": "tauc"}}], "no analysis agent named 'tauc'"),
        ([coat, {"name": "uvvis", "kind": "uv_vis", "analysis": {"agent": "tauc-band-gap", "options": {"w": 1}}}],
         "unknown field 'workflow.1.analysis.options.w'"),
        ([coat, {"name": "uvvis", "kind": "uvvis", "analysis": {"agent": "tauc-band-gap"}}],
         "no instrument of kind 'uvvis' for step 'uvvis'"),
        ([coat, {"name": "coat", "kind": "uv_vis", "analysis": {"agent": "tauc-band-gap"}}], "step coat given twice"),
        ([coat], "no step has an analysis"),
    ]
    for workflow, message in cases:
        with pytest.raises(CampaignFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_campaign({**base, "workflow": workflow}, "w.yaml")


def test_the_orchestrator_imports_no_technique_and_nothing_above_it() -> None:
    """``orchestrator/`` reaches analyses only by name (``agents.analyses``) and the default workflow's definition;
    it imports no agent, analysis or reading type of a technique, and nothing from ``flows/``."""
    import ast

    allowed = {"agents.analyses", "agents.builtin_analyses", "agents.planner", "instruments.client",
               "instruments.errors", "instruments.security", "instruments.readings"}
    for path in sorted((ROOT / "orchestrator").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                module, names = node.names[0].name, []
            else:
                continue
            root = module.split(".")[0]
            assert root != "flows", f"{path.name} imports {module} (an arrow up)"
            if root in ("agents", "instruments"):
                assert module in allowed, f"{path.name} imports {module}"
            if module == "instruments.readings":
                assert names == ["reading_from_dict"], f"{path.name} imports reading types {names}"
            assert root != "analysis", f"{path.name} imports {module}"
            if root == "sim_lab":
                assert path.name == "simulated_lab.py", f"{path.name} knows the simulated lab"


def test_an_installed_package_registers_its_agent_by_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lab's own package, installed beside Crucible, names its agent in the ``crucible.analyses`` entry-point
    group: a campaign file can use it with no registration call; a broken entry point is named when asked for."""
    import agents.analyses as registry

    (tmp_path / "mylab_uvvis.py").write_text(
        "from tests.test_workflow_campaigns import TAUC as KIND\nBROKEN = None\n"
    )
    info = tmp_path / "mylab-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mylab\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[crucible.analyses]\nlab-tauc = mylab_uvvis:KIND\nlab-broken = mylab_missing:KIND\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_registry", {})
    monkeypatch.setattr(registry, "_broken", {})
    monkeypatch.setattr(registry, "_loaded", False)
    assert registry.analysis_kind("lab-tauc") is TAUC
    assert "xrd" in registry.analysis_names()  # the built-in ones are there too
    with pytest.raises(KeyError, match="lab-broken.*cannot be loaded"):
        registry.analysis_kind("lab-broken")
