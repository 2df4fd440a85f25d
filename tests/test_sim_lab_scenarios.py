"""The phase-2 scenarios (catalyst, composition spread, nanoparticles) and the SAXS, PDF and XAS drivers."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from instruments.drivers import Driver
from instruments.readings import PairDistribution, ScatteringCurve, Spectrum, reading_from_dict
from sim_lab.saxs import CoreShellSphere, Cylinder, Sphere
from sim_lab.scenarios import SCENARIOS, CeriaNanoparticles, CeriaZirconiaCatalyst, MgZnCeOxideSpread, get_scenario
from sim_lab.scoring import true_optimum
from sim_lab.serve import DRIVERS, build_driver
from sim_lab.tray import SampleTray


class Job:
    job_id = "job"
    aborted = False

    def progress(self, fraction: float, message: str = "") -> None:
        pass


def corners_and_centre(scenario) -> list[dict[str, float]]:
    bounds = [(p.low, p.high) for p in scenario.parameters]
    points = [
        dict(zip([p.name for p in scenario.parameters], values, strict=True)) for values in itertools.product(*bounds)
    ]
    points.append({p.name: 0.5 * (p.low + p.high) for p in scenario.parameters})
    return points


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_gives_a_consistent_truth_everywhere(name: str) -> None:
    scenario = get_scenario(name)
    candidates = scenario.candidate_phases()
    for conditions in corners_and_centre(scenario):
        truth = scenario.truth(conditions)
        assert all(math.isfinite(v) for v in truth.quantities.values())
        assert {p.name for p in truth.phases} <= set(candidates)
        assert sum(p.weight_fraction for p in truth.phases) == pytest.approx(1.0, abs=0.01)
        assert all(1.0 <= p.crystallite_size_nm <= 150.0 for p in truth.phases)
        for fractions in truth.oxidation_states.values():
            assert sum(fractions.values()) == pytest.approx(1.0) and min(fractions.values()) >= 0
        assert scenario.synthesis_duration_s(conditions) > 0


def test_catalyst_pdo_decomposes_and_nio_sinters() -> None:
    scenario = CeriaZirconiaCatalyst()
    base = {"zr_fraction": 0.2, "ni_loading_wt": 10.0, "pd_loading_wt": 2.0, "calcination_temperature_c": 600.0}
    cool, hot = scenario.quantities(base), scenario.quantities({**base, "calcination_temperature_c": 900.0})
    assert cool["pdo_fraction"] > 0.02 and cool["pd_fraction"] < 1e-3
    assert hot["pd_fraction"] == pytest.approx(0.02, rel=0.01) and hot["pdo_fraction"] < 1e-3
    assert hot["nio_crystallite_size_nm"] > cool["nio_crystallite_size_nm"]
    more_ni = scenario.quantities({**base, "ni_loading_wt": 20.0})
    assert more_ni["nio_fraction"] == pytest.approx(0.2 * 74.692 / 58.693)
    assert more_ni["nio_crystallite_size_nm"] > cool["nio_crystallite_size_nm"]
    zr_rich = scenario.quantities({**base, "zr_fraction": 0.5})
    assert zr_rich["ceria_zirconia_a_angstrom"] < cool["ceria_zirconia_a_angstrom"]
    assert zr_rich["ce3_fraction"] > cool["ce3_fraction"]
    phase_names = [p.name for p in scenario.truth({**base, "calcination_temperature_c": 900.0}).phases]
    assert "pd" in phase_names and "pdo" not in phase_names
    ceria_zirconia = next(p for p in scenario.truth(base).phases if p.name == "ceria_zirconia")
    assert ceria_zirconia.structure.composition.get_atomic_fraction("Zr") == pytest.approx(0.2 / 3)


def test_catalyst_nickel_surface_area_has_an_interior_optimum_in_loading() -> None:
    best, value = true_optimum(CeriaZirconiaCatalyst(), "nio_surface_area_m2_per_g", "maximize")
    assert 2.0 < best["ni_loading_wt"] < 19.0 and value > 0


def test_composition_spread_maps_the_pseudo_ternary() -> None:
    scenario = MgZnCeOxideSpread()
    for x, y in itertools.product(np.linspace(-40, 40, 9), repeat=2):
        q = scenario.quantities({"wafer_x_mm": x, "wafer_y_mm": y})
        assert q["mg_fraction"] + q["zn_fraction"] + q["ce_fraction"] == pytest.approx(1.0)
        assert q["rocksalt_zn_share"] <= 0.30 + 1e-12 and q["wurtzite_zn_share"] >= 0.85 - 1e-12
    mg_corner = scenario.quantities({"wafer_x_mm": 0.0, "wafer_y_mm": 40.0})
    assert mg_corner["wurtzite_fraction"] == 0.0 and mg_corner["rocksalt_fraction"] > 0.5
    zn_corner = scenario.quantities({"wafer_x_mm": -38.0, "wafer_y_mm": -22.0})
    assert zn_corner["rocksalt_fraction"] == 0.0 and zn_corner["wurtzite_fraction"] > 0.5
    centre = scenario.quantities({"wafer_x_mm": 0.0, "wafer_y_mm": 0.0})
    assert centre["n_phases"] == 3.0
    # Within the two-phase Mg–Zn field the rock salt lattice is pinned at its Zn solubility limit.
    assert centre["rocksalt_a_angstrom"] == pytest.approx(4.212 + 0.068 * 0.30)
    rocksalt = next(p for p in scenario.truth({"wafer_x_mm": 0.0, "wafer_y_mm": 40.0}).phases if p.name == "rocksalt")
    zn_share = rocksalt.structure.composition.get_atomic_fraction("Zn") * 2
    assert zn_share == pytest.approx(mg_corner["rocksalt_zn_share"], abs=1e-6)


def test_nanoparticles_grow_narrow_and_change_shape() -> None:
    scenario = CeriaNanoparticles()
    base = {"reaction_temperature_c": 220.0, "reaction_time_min": 30.0, "ligand_ratio": 2.0, "zr_shell_ratio": 0.0}

    def q(**changes: float) -> dict[str, float]:
        return scenario.quantities({**base, **changes})

    assert q(reaction_temperature_c=280.0)["particle_radius_nm"] > q()["particle_radius_nm"]
    assert q(reaction_time_min=120.0)["particle_radius_nm"] > q()["particle_radius_nm"]
    assert q(ligand_ratio=4.0)["radius_pd"] < q()["radius_pd"]
    assert q(reaction_time_min=120.0)["ce3_fraction"] < q()["ce3_fraction"]
    assert q()["aspect_ratio"] == 1.0 and q(ligand_ratio=8.0)["aspect_ratio"] > 1.5
    assert isinstance(scenario.truth(base).particles[0].particles, Sphere)
    assert isinstance(scenario.truth({**base, "zr_shell_ratio": 0.3}).particles[0].particles, CoreShellSphere)
    rods = scenario.truth({**base, "ligand_ratio": 8.0, "zr_shell_ratio": 0.3}).particles
    assert isinstance(rods[0].particles, Cylinder) and isinstance(rods[1].particles, Sphere)
    # Rods keep the volume of the sphere the documented ripening law grows (R³ = R_n³ + K t / (1 + L/2)).
    rate = 2.1e8 * math.exp(-80.0 / (8.314462618e-3 * (220.0 + 273.15))) / (1 + 8.0 / 2.0)
    sphere_volume = 4 / 3 * math.pi * (10.0 * (0.8**3 + rate * 30.0) ** (1 / 3)) ** 3
    rod = rods[0].particles
    assert math.pi * rod.radius_angstrom**2 * rod.length_angstrom == pytest.approx(sphere_volume)


@pytest.fixture
def nanoparticle_lab(tmp_path: Path) -> dict[str, Driver]:
    drivers = {kind: build_driver(kind, "ceria_nanoparticles", str(tmp_path), 4, 0.0) for kind in DRIVERS}
    conditions = {
        "reaction_temperature_c": 240.0,
        "reaction_time_min": 60.0,
        "ligand_ratio": 2.0,
        "zr_shell_ratio": 0.0,
    }
    drivers["synthesiser"].run({"sample_id": "np-1", "conditions": conditions}, Job())
    return drivers


def test_every_technique_measures_a_sample_from_the_tray(nanoparticle_lab: dict[str, Driver]) -> None:
    for kind, driver in nanoparticle_lab.items():
        assert isinstance(driver, Driver) and driver.describe()["kind"] == kind
    saxs = reading_from_dict(nanoparticle_lab["saxs"].run({"sample_id": "np-1", "exposure_s": 30.0}, Job())["reading"])
    pdf = reading_from_dict(nanoparticle_lab["pdf"].run({"sample_id": "np-1"}, Job())["reading"])
    xas = reading_from_dict(nanoparticle_lab["xas"].run({"sample_id": "np-1", "edge": "Ce_L3"}, Job())["reading"])
    assert isinstance(saxs, ScatteringCurve) and isinstance(pdf, PairDistribution) and isinstance(xas, Spectrum)
    # SAXS: the Guinier plateau of the particles sits far above the background.
    assert saxs.intensity[0] > 100 * saxs.intensity[-1]
    assert saxs.sample_id == pdf.sample_id == xas.sample_id == "np-1"
    again = nanoparticle_lab["saxs"].run({"sample_id": "np-1", "exposure_s": 30.0}, Job())["reading"]
    assert again["intensity"] == saxs.as_dict()["intensity"]


def test_technique_drivers_refuse_what_they_cannot_measure(nanoparticle_lab: dict[str, Driver]) -> None:
    with pytest.raises(ValueError, match="Ni_K"):
        nanoparticle_lab["xas"].run({"sample_id": "np-1", "edge": "Ni_K"}, Job())
    with pytest.raises(ValueError, match="exposure_s"):
        nanoparticle_lab["pdf"].run({"sample_id": "np-1", "exposure_s": 0}, Job())
    with pytest.raises(ValueError, match="unknown run parameter"):
        nanoparticle_lab["saxs"].run({"sample_id": "np-1", "edge": "Ce_L3"}, Job())


def test_saxs_of_a_powder_scenario_is_background_only(tmp_path: Path) -> None:
    tray = SampleTray(tmp_path)
    tray.put("tio2", "tio2_calcination", {"anneal_temperature_c": 600.0, "anneal_time_h": 1.0, "dopant_fraction": 0.0})
    saxs = build_driver("saxs", "tio2_calcination", str(tmp_path), 0, 0.0)
    curve = reading_from_dict(saxs.run({"sample_id": "tio2"}, Job())["reading"])
    assert np.median(curve.intensity) == pytest.approx(0.05, rel=0.1)
    xas = build_driver("xas", "tio2_calcination", str(tmp_path), 0, 0.0)
    with pytest.raises(ValueError, match="no absorber"):
        xas.run({"sample_id": "tio2"}, Job())
