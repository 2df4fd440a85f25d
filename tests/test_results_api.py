"""Issue 19: results a scientist takes away. A short simulated campaign run as a user runs it (``crucible run FILE
--sim``), then opened with ``crucible.open_campaign`` in a fresh process that starts no server: its table equals the
database's records, its readings are the instrument's, its model predicts what the planner predicts; every export
(CSV, Parquet, JSON; .xye and NeXus patterns) reads back equal; ``crucible export`` writes them from the CLI."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

import crucible
from analysis.readers import read_pattern
from crucible.export import export_campaign, read_experiments
from crucible.patterns import read_nexus, read_xye
from crucible.results import CampaignNotFound, CampaignResults, ResultsError
from instruments.readings import Diffractogram, reading_from_dict
from orchestrator.spec import parse_campaign
from orchestrator.store import (
    CampaignRecord,
    ExperimentRecord,
    ExperimentStatus,
    ProposalRecord,
    StepAnalysisRecord,
    Store,
)
from tests.conftest import ROOT, example_campaign
from tests.conftest import crucible as crucible_cli

NAME = "takeaway"
BUDGET = 6


@dataclass(frozen=True)
class Recorded:
    """A campaign ``crucible run --sim`` ran to its budget: its directory and database."""

    directory: Path
    runs_dir: Path
    url: str


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[Recorded]:
    """Six experiments of the TiO2 demo (four from the initial design, two from the model) through the CLI."""
    from prefect.settings import PREFECT_API_URL

    directory = tmp_path_factory.mktemp("takeaway")
    data = example_campaign(
        name=NAME,
        budget={"experiments": BUDGET, "batch_size": 1},
        planner={"name": "botorch", "initial_experiments": 4, "raw_samples": 32, "num_restarts": 2},
    )
    (directory / "campaign.yaml").write_text(yaml.safe_dump(data))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
        result = crucible_cli("run", "campaign.yaml", "--sim", "--runs-dir", "runs", cwd=directory)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    runs_dir = directory / "runs"
    yield Recorded(directory, runs_dir, f"sqlite:///{runs_dir / 'crucible.db'}")


@pytest.fixture()
def results(recorded: Recorded) -> Iterator[CampaignResults]:
    with crucible.open_campaign(NAME, runs_dir=recorded.runs_dir) as opened:
        yield opened


def _python(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _same(a: Any, b: Any) -> bool:
    """Equal values, NaN equal to NaN (an undetermined quantity) and to a missing one."""
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return (a is None or math.isnan(a)) and (b is None or (isinstance(b, float) and math.isnan(b)))
    return bool(a == b)


def test_import_crucible_is_cheap(tmp_path: Path) -> None:
    result = _python(
        "import sys, crucible; print(crucible.__version__); "
        "print(sorted(m for m in ('pandas', 'torch', 'sqlmodel', 'h5py', 'prefect') if m in sys.modules))",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    version, heavy = result.stdout.splitlines()
    assert version != "0+unknown" and heavy == "[]"


def test_a_fresh_process_reads_the_table_the_store_holds(recorded: Recorded, tmp_path: Path) -> None:
    """Opened by name (the runs directory) and by database URL in a new interpreter: no Prefect, no simulated lab,
    no instrument server; one row per recorded experiment, with the store's conditions and quantities."""
    out = tmp_path / "frames.pickle"
    script = f"""
import json, pickle, sys
import crucible
by_name = crucible.open_campaign({NAME!r}, runs_dir={str(recorded.runs_dir)!r})
by_url = crucible.open_campaign({recorded.url!r}, name={NAME!r})
frames = (by_name.experiments(), by_url.experiments())
pickle.dump(frames, open({str(out)!r}, "wb"))
print(json.dumps(sorted(m for m in ("prefect", "sim_lab", "orchestrator.simulated_lab", "flows") if m in sys.modules)))
"""
    result = _python(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [], "opening results started no flow and no lab"
    frame, by_url = pickle.loads(out.read_bytes())
    pd.testing.assert_frame_equal(frame, by_url)

    store = Store(recorded.url)
    record = store.campaign_by_name(NAME)
    assert record is not None
    experiments = store.experiments(record.id)
    assert len(experiments) == BUDGET
    assert list(frame.index) == [e.index for e in experiments] and frame.index.name == "experiment"
    spec = parse_campaign(json.loads(record.spec_json))
    for experiment in experiments:
        row = frame.loc[experiment.index]
        assert row["experiment_id"] == experiment.id and row["sample_id"] == experiment.sample_id
        assert {name: row[name] for name in experiment.conditions} == experiment.conditions
        analyses = store.step_analyses(experiment.id)
        assert set(analyses) == {"xrd"}
        for name, measured in analyses["xrd"].quantities.items():
            assert _same(row[f"xrd.{name}"], measured["value"]), name
            assert _same(row[f"xrd.{name}_std"], measured["std"]), name
        assert row["status"] == experiment.status == ExperimentStatus.ANALYSED
        assert row["marked_bad"] == (experiment.excluded_reason is not None)
        proposal = store.proposal(experiment.id)
        assert proposal is not None and row["strategy"] == proposal.strategy
        assert row["synthesis_instrument"] == "furnace" and row["xrd_instrument"] == "xrd"
        assert row["planned_at"] <= row["synthesis_done_at"] <= row["xrd_done_at"] <= row["finished_at"]
    assert list(frame["strategy"]) == ["sobol"] * 4 + ["qLogNEI"] * 2
    units = frame.attrs["units"]
    assert units["anneal_temperature_c"] == "degC" and units["anneal_time_h"] == "h"
    assert units["xrd.anatase_crystallite_size_nm"] == units["xrd.anatase_crystallite_size_nm_std"] == "nm"
    assert set(spec.quantities()) <= set(frame.columns)
    store.close()


def test_readings_best_and_what_the_model_predicts(results: CampaignResults, recorded: Recorded) -> None:
    store = Store(recorded.url)
    frame = results.experiments()
    for index, experiment_id in frame["experiment_id"].items():
        stored = store.step_result(experiment_id, "xrd")
        assert stored is not None and stored.reading is not None
        expected = reading_from_dict(stored.reading)
        pattern = results.reading(int(index))  # type: ignore[call-overload]
        assert isinstance(pattern, Diffractogram) and pattern.sample_id == frame.loc[index, "sample_id"]
        assert np.array_equal(pattern.counts, expected.counts)
        arrays = results.reading_arrays(int(index), "xrd")  # type: ignore[call-overload]
        assert set(arrays) == {"two_theta_deg", "counts", "sigma"}
        assert np.array_equal(arrays["two_theta_deg"], expected.two_theta_deg)
        assert np.allclose(arrays["sigma"], np.sqrt(np.maximum(expected.counts, 1.0)))
    store.close()
    assert [(index, step) for index, step, _ in results.readings()] == [(i, "xrd") for i in range(BUDGET)]
    with pytest.raises(ResultsError, match="no reading of step 'synthesis'"):
        results.reading(0, "synthesis")
    with pytest.raises(ResultsError, match=f"no experiment 99; it has experiments 0 to {BUDGET - 1}"):
        results.reading(99)

    best = results.best()
    size = "xrd.anatase_crystallite_size_nm"
    feasible = frame[frame["feasible"] & frame[size].notna()]
    assert best is not None and best.name == feasible[size].idxmax()
    assert best[size] == feasible[size].max() and best["xrd.rutile_fraction"] <= 0.10
    assert list(results.pareto_front().index) == [best.name]  # one objective: the best row

    # the model: the planner restored from the store predicts, at the conditions it proposes next, what predict does
    planner = results.planner()
    assert len(planner.observations) == BUDGET  # type: ignore[attr-defined]
    (proposal,) = planner.ask(1)
    predicted = results.predict([proposal.conditions])
    assert len(predicted) == 1 and predicted.attrs["units"][size] == "nm"
    for name, (mean, std) in proposal.predicted.items():
        if name == "feasibility":
            assert predicted.loc[0, "p_success"] == pytest.approx(mean, rel=1e-6)
            continue
        key = results.spec.quantity_key(name)
        assert predicted.loc[0, key] == pytest.approx(mean, rel=1e-6), name
        assert predicted.loc[0, f"{key}_std"] == pytest.approx(std, rel=1e-6), name
    at_best = results.predict(frame.loc[[best.name]])  # rows of the table work too
    assert at_best.loc[0, size] == pytest.approx(best[size], abs=4 * best[f"{size}_std"] + 1.0)


def test_every_export_format_reads_back_equal(results: CampaignResults, tmp_path: Path) -> None:
    frame = results.experiments()
    for fmt in ("csv", "parquet", "json"):
        written = export_campaign(results, tmp_path / fmt, fmt)
        table = tmp_path / fmt / f"experiments.{fmt}"
        assert table in written and (tmp_path / fmt / "campaign.yaml") in written
        back = read_experiments(table)
        pd.testing.assert_frame_equal(back, frame, check_exact=True)
        assert back.attrs["units"] == frame.attrs["units"], fmt
    # and with pandas alone
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "parquet" / "experiments.parquet"), frame)
    assert pd.read_parquet(tmp_path / "parquet" / "experiments.parquet").attrs["units"] == frame.attrs["units"]
    plain_json = pd.read_json(tmp_path / "json" / "experiments.json", orient="table", precise_float=True)
    pd.testing.assert_frame_equal(plain_json, frame, check_dtype=False)
    fields = json.loads((tmp_path / "json" / "experiments.json").read_text())["schema"]["fields"]
    assert {f["name"]: f["unit"] for f in fields if "unit" in f} == frame.attrs["units"]
    plain_csv = pd.read_csv(tmp_path / "csv" / "experiments.csv", index_col="experiment")
    assert np.array_equal(plain_csv["anneal_temperature_c"], frame["anneal_temperature_c"])
    rerun = parse_campaign(yaml.safe_load((tmp_path / "csv" / "campaign.yaml").read_text()))
    assert rerun == results.spec  # the campaign file, as `crucible run` takes it

    written = export_campaign(results, tmp_path / "patterns", "csv", patterns=("xye", "nexus"))
    for index, sample_id in frame["sample_id"].items():
        arrays = results.reading_arrays(int(index))  # type: ignore[call-overload]
        pattern = results.reading(int(index))  # type: ignore[call-overload]
        assert isinstance(pattern, Diffractogram)
        xye = tmp_path / "patterns" / "patterns" / f"{sample_id}_xrd.xye"
        nexus = xye.with_suffix(".nxs")
        assert xye in written and nexus in written
        text_pattern, sigma = read_xye(xye)
        assert np.array_equal(text_pattern.two_theta_deg, arrays["two_theta_deg"])
        assert np.array_equal(text_pattern.counts, arrays["counts"]) and np.array_equal(sigma, arrays["sigma"])
        assert text_pattern.wavelength_angstrom == pattern.wavelength_angstrom
        assert text_pattern.wavelength_ka2_angstrom == pattern.wavelength_ka2_angstrom
        assert xye.read_text().splitlines()[0].startswith("# wavelength: ")
        as_a_lab_reads_it = read_pattern(xye)  # the reader of `crucible analyse` finds the radiation in the header
        assert as_a_lab_reads_it.wavelength_angstrom == pattern.wavelength_angstrom
        assert np.array_equal(as_a_lab_reads_it.counts, arrays["counts"])
        nexus_pattern, errors = read_nexus(nexus)
        assert np.array_equal(nexus_pattern.two_theta_deg, arrays["two_theta_deg"])
        assert np.array_equal(nexus_pattern.counts, arrays["counts"]) and np.array_equal(errors, arrays["sigma"])
        assert nexus_pattern.sample_id == sample_id and nexus_pattern.metadata == pattern.metadata
        with h5py.File(nexus, "r") as nx:
            entry, data = nx["entry"], nx["entry/data"]
            assert entry.attrs["NX_class"] == "NXentry" and data.attrs["NX_class"] == "NXdata"
            assert data.attrs["signal"] == "counts" and data.attrs["axes"] == "two_theta"
            assert data["two_theta"].attrs["units"] == "degrees" and data["counts"].attrs["units"] == "counts"
            assert np.array_equal(data["errors"][()], arrays["sigma"])
            monochromator = nx["entry/instrument/monochromator"]
            assert monochromator.attrs["NX_class"] == "NXmonochromator"
            assert monochromator["wavelength"][()] == pattern.wavelength_angstrom
            assert monochromator["wavelength"].attrs["units"] == "angstrom"
            sample = nx["entry/sample"]
            assert sample["anneal_temperature_c"][()] == frame.loc[index, "anneal_temperature_c"]
            assert sample["anneal_temperature_c"].attrs["units"] == "degC"


def test_crucible_export_writes_the_files(recorded: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "takeaway"
    result = crucible_cli(
        "export", NAME, "--to", str(out), "--format", "parquet", "--patterns", "xye,nexus",
        "--runs-dir", str(recorded.runs_dir), cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"campaign {NAME}: {BUDGET} experiments" in result.stdout
    with crucible.open_campaign(recorded.url, name=NAME) as opened:
        frame = opened.experiments()
    pd.testing.assert_frame_equal(read_experiments(out / "experiments.parquet"), frame)
    assert len(list((out / "patterns").glob("*.xye"))) == len(list((out / "patterns").glob("*.nxs"))) == BUDGET
    by_url = crucible_cli("export", NAME, "--to", str(tmp_path / "json"), "--format", "json",
                          "--database", recorded.url, cwd=tmp_path)
    assert by_url.returncode == 0, by_url.stderr
    pd.testing.assert_frame_equal(read_experiments(tmp_path / "json" / "experiments.json"), frame)

    wrong = crucible_cli("export", NAME, "--to", str(out), "--format", "xls", cwd=tmp_path)
    assert wrong.returncode == 2 and "xls" in wrong.stderr
    help_text = crucible_cli("export", "--help", cwd=tmp_path).stdout
    for option in ("--to", "--format", "--patterns", "--database", "--runs-dir"):
        assert option in help_text


def test_a_missing_campaign_names_the_campaigns_there(recorded: Recorded, tmp_path: Path) -> None:
    with pytest.raises(CampaignNotFound, match=rf"no campaign named 'tio2' in .*; campaigns there: '{NAME}'"):
        crucible.open_campaign("tio2", runs_dir=recorded.runs_dir)
    with pytest.raises(CampaignNotFound, match="no campaign database at"):
        crucible.open_campaign(NAME, runs_dir=tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists(), "looking for results creates no database"
    result = crucible_cli("export", "tio2", "--to", str(tmp_path / "out"), "--runs-dir", str(recorded.runs_dir),
                          cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: no campaign named 'tio2'") and f"'{NAME}'" in lines[0]


def _analysed(campaign: CampaignRecord, index: int, size: float, rutile: float, **fields: Any) -> list[Any]:
    """An analysed experiment of ``campaign`` with its XRD quantities, as the campaign records one."""
    quantities = {"anatase_crystallite_size_nm": {"value": size, "std": 0.1},
                  "rutile_fraction": {"value": rutile, "std": 0.01}}
    experiment = ExperimentRecord(
        campaign_id=campaign.id, index=index, sample_id=f"{campaign.name}-{index:04d}",
        conditions_json=json.dumps({"anneal_temperature_c": 500.0 + index, "anneal_time_h": 2.0,
                                    "dopant_fraction": 0.01}),
        status=ExperimentStatus.ANALYSED,
        outcomes_json=json.dumps({f"xrd.{k}": v for k, v in quantities.items()}), **fields,
    )
    analysis = StepAnalysisRecord(experiment_id=experiment.id, step="xrd", agent="xrd-phase-quantification",
                                  quantities_json=json.dumps(quantities))
    proposal = ProposalRecord(experiment_id=experiment.id, strategy="qLogNEHVI", model_made=True)
    return [experiment, analysis, proposal]


def test_the_pareto_front_of_two_objectives(tmp_path: Path) -> None:
    """Larger anatase crystallites against less rutile: the front is the feasible experiments nothing beats in
    both; one marked bad, one failed and one undetermined are not on it."""
    data = example_campaign(
        name="front",
        objectives=[{"name": "anatase_crystallite_size_nm", "direction": "maximize"},
                    {"name": "rutile_fraction", "direction": "minimize"}],
        constraints=[{"name": "rutile_fraction", "op": "<=", "value": 0.5}],
    )
    spec = parse_campaign(data)
    url = f"sqlite:///{tmp_path / 'front.db'}"
    store = Store(url)
    campaign = CampaignRecord(name="front", spec_json=spec.model_dump_json())
    store.add(campaign)
    points = [(10.0, 0.05), (20.0, 0.08), (15.0, 0.09), (5.0, 0.01), (25.0, 0.7), (math.nan, 0.0)]
    for index, (size, rutile) in enumerate(points):
        store.add(*_analysed(campaign, index, size, rutile))
    store.add(*_analysed(campaign, 6, 30.0, 0.0, excluded_reason="cracked crucible"))
    store.add(ExperimentRecord(campaign_id=campaign.id, index=7, sample_id="front-0007", conditions_json="{}",
                               status=ExperimentStatus.FAILED, failure_reason="furnace tripped"))
    store.close()

    with crucible.open_campaign(url, name="front") as opened:  # the only campaign: name= may be left out too
        frame = opened.experiments()
        assert list(opened.pareto_front().index) == [0, 1, 3]  # 2 is beaten by 1; 4 breaks the constraint
        with pytest.raises(ResultsError, match="several objectives"):
            opened.best()
        predicted = opened.predict([{"anneal_temperature_c": 600.0, "anneal_time_h": 2.0, "dopant_fraction": 0.0}])
        for column in ("xrd.anatase_crystallite_size_nm", "xrd.rutile_fraction_std", "p_success"):
            assert math.isfinite(predicted.loc[0, column]), column
    assert list(frame["feasible"]) == [True, True, True, True, False, True, True, False]
    assert frame.loc[6, "marked_bad"] and frame.loc[6, "marked_bad_reason"] == "cracked crucible"
    assert frame.loc[7, "status"] == "failed" and frame.loc[7, "failure_reason"] == "furnace tripped"
    assert frame.loc[7, ["anneal_temperature_c", "xrd.rutile_fraction"]].isna().all()
    assert not pd.isna(frame.loc[7, "finished_at"]) and pd.isna(frame.loc[0, "xrd_done_at"])
    with crucible.open_campaign(url) as only:
        assert only.name == "front"


def test_status_and_report_answer_in_json(recorded: Recorded, tmp_path: Path) -> None:
    """``--json`` on status and report gives the store's experiments and the best feasible one as data."""
    where = ("--runs-dir", str(recorded.runs_dir))
    listed = crucible_cli("status", "--json", *where, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [c["campaign"] for c in json.loads(listed.stdout)] == [NAME]
    one = crucible_cli("status", NAME, "--json", *where, cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    state = json.loads(one.stdout)
    store = Store(recorded.url)
    try:
        record = store.campaign_by_name(NAME)
        assert record is not None
        stored = store.experiments(record.id)
    finally:
        store.close()
    assert [e["experiment"] for e in state["experiments"]] == [e.index for e in stored]
    for shown, experiment in zip(state["experiments"], stored, strict=True):
        assert shown["conditions"] == experiment.conditions and shown["status"] == experiment.status
        size = experiment.outcomes["xrd.anatase_crystallite_size_nm"]["value"]
        assert shown["outcomes"]["anatase_crystallite_size_nm"]["value"] == (None if math.isnan(size) else size)
    summary = json.loads(crucible_cli("report", NAME, "--json", *where, cwd=tmp_path).stdout)
    sized = [e for e in state["experiments"] if e["feasible"] and e["outcomes"]["anatase_crystallite_size_nm"]["value"]]
    best = max(sized, key=lambda e: e["outcomes"]["anatase_crystallite_size_nm"]["value"])
    assert summary["best"]["experiment"] == best["experiment"] and summary["experiments"] == BUDGET


def test_the_cli_answers_help_without_loading_the_science() -> None:
    """``crucible --help`` (and every command's ``--help``) loads neither torch, pymatgen, BoTorch nor Prefect; the
    CLI names its version; one short option has one meaning."""
    script = (
        "import sys; from typer.testing import CliRunner; from flows.cli import app; "
        "runner = CliRunner(); "
        "codes = [runner.invoke(app, [*c, '--help']).exit_code for c in ([], ['run'], ['status'], ['report'], "
        "['export'], ['analyse'], ['worker'])]; "
        "heavy = [m for m in ('torch', 'pymatgen', 'botorch', 'prefect', 'pandas', 'scipy') if m in sys.modules]; "
        "print(codes, heavy)"
    )
    result = _python(script, ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 0, 0, 0, 0, 0, 0] []", result.stdout
    version = crucible_cli("--version", cwd=ROOT)
    assert version.returncode == 0 and version.stdout.strip() == f"crucible {crucible.__version__}"
