"""The network ensemble: rebinning, the shipped TiO2 weights on held-out simulated patterns, training end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.analysis_agents import XRDNetworkAgent
from analysis.ml import PatternGrid, load_ensemble, rebin
from analysis.ml.ensemble import WEIGHTS_DIR
from instruments.readings import Diffractogram, Spectrum
from sim_lab.datasets import Nuisance, measured_set

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def held_out() -> list:
    return measured_set("tio2_calcination", 150, seed=424_242, nuisance=Nuisance())


def test_rebin_sums_pairs_and_conserves_counts() -> None:
    x = 10.0 + 0.02 * np.arange(11)
    y = np.arange(11, dtype=float)
    grid = PatternGrid.pairs_of(x)
    assert grid.n_bins == 5 and grid.bin_deg == pytest.approx(0.04)
    np.testing.assert_allclose(rebin(x, y, grid), [1.0, 5.0, 9.0, 13.0, 17.0])
    fine = PatternGrid(x[0] - 0.01, 0.22 / 7, 7)  # bins that split points: counts are still conserved
    assert rebin(x, y, fine).sum() == pytest.approx(y.sum())
    with pytest.raises(ValueError, match="covers"):
        rebin(x, y, PatternGrid(9.0, 0.04, 5))


def test_shipped_weights_are_small_documented_and_load_without_sim_lab() -> None:
    card_path = WEIGHTS_DIR / "tio2_calcination.json"
    assert card_path.with_suffix(".pt").stat().st_size < 2_000_000
    card = json.loads(card_path.read_text())
    assert card["provenance"]["command"].startswith("crucible train tio2_calcination")
    assert {"seed", "n_patterns", "epochs", "members"} <= set(card["provenance"])
    code = (
        "import sys; sys.modules['sim_lab'] = None\n"  # any import of sim_lab now fails
        "from analysis.ml import load_ensemble\n"
        "e = load_ensemble('tio2_calcination'); print(len(e.members), e.card.phases)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "['anatase', 'rutile']" in done.stdout


def test_network_recovers_truth_with_calibrated_intervals(held_out: list) -> None:
    torch.set_num_threads(1)
    ensemble = load_ensemble("tio2_calcination")
    prediction = ensemble.predict([s.pattern for s in held_out])
    fraction_errors, lattice_errors, hits = [], [], []
    for i, sample in enumerate(held_out):
        found = prediction.quantities(i)
        for name, true in sample.quantities.items():
            if name not in found or name.endswith("crystallite_size_nm"):
                continue
            phase = name.split("_")[0]
            if name.endswith("_angstrom") and sample.quantities[f"{phase}_fraction"] < 0.05:
                continue  # a lattice of an (almost) absent phase is not determined by the data
            error = abs(found[name].value - true)
            (fraction_errors if name.endswith("_fraction") else lattice_errors).append(error)
            hits.append(error <= 1.96 * found[name].std)
    assert np.mean(fraction_errors) < 0.02
    assert np.mean(lattice_errors) < 0.003
    assert 0.88 <= np.mean(hits) <= 0.99


def test_agent_reports_every_quantity_with_uncertainty(held_out: list) -> None:
    agent = XRDNetworkAgent("tio2_calcination")
    for sample in held_out[:3]:
        agent.tell(sample.pattern)
    reports = agent.report()
    assert [r.sample_id for r in reports] == [s.pattern.sample_id for s in held_out[:3]]
    expected = {"anatase_fraction", "rutile_fraction", "anatase_a_angstrom", "anatase_c_angstrom",
                "rutile_a_angstrom", "rutile_c_angstrom", "anatase_crystallite_size_nm", "rutile_crystallite_size_nm"}
    for report in reports:
        assert set(report.quantities) == expected
        fractions = report.quantities["anatase_fraction"].value + report.quantities["rutile_fraction"].value
        assert fractions == pytest.approx(1.0, abs=1e-5)
        assert all(m.std > 0 for name, m in report.quantities.items() if not np.isnan(m.value))
    assert agent.report() == []
    with pytest.raises(TypeError, match="diffractograms"):
        agent.tell(Spectrum([1.0, 2.0], [0.1, 0.2]))


def test_network_refuses_other_radiation(held_out: list) -> None:
    pattern = held_out[0].pattern
    molybdenum = Diffractogram(pattern.two_theta_deg, pattern.counts, wavelength_angstrom=0.7093)
    with pytest.raises(ValueError, match="retrain"):
        XRDNetworkAgent("tio2_calcination").tell(molybdenum)


def test_train_end_to_end_writes_a_loadable_ensemble(tmp_path: Path) -> None:
    from flows.training import train

    lines: list[str] = []
    card_path = train("tio2_calcination", tmp_path, n_patterns=48, epochs=1, seed=3, members=2, log=lines.append)
    assert card_path == tmp_path / "tio2_calcination.json"
    ensemble = load_ensemble(card_path)
    assert len(ensemble.members) == 2
    assert ensemble.card.provenance["n_patterns"] == 48
    assert set(ensemble.card.std_scale) == {"fraction", "lattice", "size"}
    pattern = measured_set("tio2_calcination", 1, seed=5)[0].pattern
    assert ensemble.predict([pattern]).fraction.shape == (1, 2)
    assert any("member 2/2" in line for line in lines)
