"""The TiO2 calcination scenario's ground truth: trends a materials scientist expects and a known optimum."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import brentq

from sim_lab import phases
from sim_lab.scenarios import SCENARIOS, TiO2Calcination, get_scenario
from sim_lab.scoring import score, true_optimum

SCENARIO = TiO2Calcination()
OBJECTIVE = "anatase_crystallite_size_nm"
CONSTRAINTS = [("rutile_fraction", "<=", 0.10)]


def conditions(temperature_c: float, time_h: float = 2.0, dopant: float = 0.0) -> dict[str, float]:
    return {"anneal_temperature_c": temperature_c, "anneal_time_h": time_h, "dopant_fraction": dopant}


def half_transformation_temperature_c(time_h: float, dopant: float) -> float:
    return brentq(lambda t: SCENARIO.rutile_fraction(t, time_h, dopant) - 0.5, 400.0, 1000.0)


def test_registry_knows_the_scenario() -> None:
    assert SCENARIOS["tio2_calcination"] is TiO2Calcination
    assert get_scenario("tio2_calcination") == SCENARIO
    with pytest.raises(KeyError, match="tio2_calcination"):
        get_scenario("no_such_scenario")


def test_parameters_and_quantity_names() -> None:
    assert [(p.name, p.low, p.high) for p in SCENARIO.parameters] == [
        ("anneal_temperature_c", 400.0, 1000.0),
        ("anneal_time_h", 0.5, 12.0),
        ("dopant_fraction", 0.0, 0.10),
    ]
    assert set(SCENARIO.quantities(conditions(700.0))) == {
        "anatase_fraction",
        "rutile_fraction",
        "anatase_crystallite_size_nm",
        "rutile_crystallite_size_nm",
        "anatase_a_angstrom",
        "anatase_c_angstrom",
        "rutile_a_angstrom",
        "rutile_c_angstrom",
    }


def test_conditions_are_validated_naming_the_parameter() -> None:
    with pytest.raises(ValueError, match="anneal_temperature_c"):
        SCENARIO.truth(conditions(1200.0))
    with pytest.raises(ValueError, match="dopant_fraction"):
        SCENARIO.truth({"anneal_temperature_c": 700.0, "anneal_time_h": 2.0})
    with pytest.raises(ValueError, match="pressure_bar"):
        SCENARIO.truth({**conditions(700.0), "pressure_bar": 1.0})
    with pytest.raises(ValueError, match="anneal_time_h"):
        SCENARIO.truth(conditions(700.0, time_h=float("nan")))


def test_more_heat_and_time_give_more_rutile_and_dopant_retards_it() -> None:
    temperatures = np.linspace(500.0, 900.0, 9)
    for dopant in (0.0, 0.05, 0.1):
        f = [SCENARIO.quantities(conditions(t, 2.0, dopant))["rutile_fraction"] for t in temperatures]
        assert np.all(np.diff(f) >= 0) and f[-1] > f[0]
    times = [0.5, 1.0, 2.0, 6.0, 12.0]
    f = [SCENARIO.quantities(conditions(680.0, t))["rutile_fraction"] for t in times]
    assert np.all(np.diff(f) > 0)
    f = [SCENARIO.quantities(conditions(720.0, 2.0, x))["rutile_fraction"] for x in (0.0, 0.02, 0.05, 0.1)]
    assert np.all(np.diff(f) < 0)


def test_half_transformation_temperatures() -> None:
    undoped = half_transformation_temperature_c(2.0, 0.0)
    doped = half_transformation_temperature_c(2.0, 0.1)
    assert 650.0 <= undoped <= 700.0
    assert 120.0 <= doped - undoped <= 150.0


def test_grain_growth_trends_and_magnitudes() -> None:
    size = lambda t, h, x: SCENARIO.quantities(conditions(t, h, x))["anatase_crystallite_size_nm"]  # noqa: E731
    assert size(400.0, 0.5, 0.0) == pytest.approx(8.0, abs=0.5)
    assert 50.0 <= size(800.0, 12.0, 0.0) <= 80.0
    assert size(700.0, 6.0, 0.0) > size(600.0, 6.0, 0.0)
    assert size(700.0, 6.0, 0.0) > size(700.0, 1.0, 0.0)
    assert size(700.0, 6.0, 0.05) < size(700.0, 6.0, 0.0)
    q = SCENARIO.quantities(conditions(950.0, 12.0))
    assert 30.0 <= q["rutile_crystallite_size_nm"] <= 150.0


def test_sizes_of_present_phases_stay_measurable_by_xrd() -> None:
    grid = itertools.product(np.linspace(400, 1000, 7), (0.5, 3.0, 12.0), (0.0, 0.05, 0.1))
    for t, h, x in grid:
        for phase in SCENARIO.truth(conditions(t, h, x)).phases:
            limit = 90.0 if phase.name == "anatase" else 150.0
            assert 5.0 <= phase.crystallite_size_nm <= limit
            assert 1e-4 <= phase.microstrain / (1.0 if phase.name == "anatase" else 0.5) <= 1e-3


def test_lattice_parameters_follow_vegards_law() -> None:
    q = SCENARIO.quantities(conditions(700.0, 2.0, 0.08))
    assert q["anatase_a_angstrom"] == pytest.approx(3.7852 + 0.12 * 0.08)
    assert q["anatase_c_angstrom"] == pytest.approx(9.5139 + 0.45 * 0.08)
    assert q["rutile_a_angstrom"] == pytest.approx(4.5937 + 0.15 * 0.08)
    assert q["rutile_c_angstrom"] == pytest.approx(2.9587 + 0.10 * 0.08)
    anatase = next(p for p in SCENARIO.truth(conditions(700.0, 2.0, 0.08)).phases if p.name == "anatase")
    assert anatase.structure.lattice.abc == pytest.approx((3.7948, 3.7948, 9.5499))


def test_trace_phases_are_left_out_of_the_sample() -> None:
    cold = SCENARIO.truth(conditions(400.0, 0.5))
    assert [p.name for p in cold.phases] == ["anatase"]
    hot = SCENARIO.truth(conditions(1000.0, 12.0))
    assert [p.name for p in hot.phases] == ["rutile"]
    mixed = SCENARIO.truth(conditions(675.0, 2.0))
    assert [p.name for p in mixed.phases] == ["anatase", "rutile"]
    assert sum(p.weight_fraction for p in mixed.phases) == pytest.approx(1.0)
    assert mixed.phases[1].weight_fraction == mixed.quantities["rutile_fraction"]


def test_candidate_phases_are_the_undoped_structures() -> None:
    candidates = SCENARIO.candidate_phases()
    assert set(candidates) == {"anatase", "rutile"}
    assert candidates["anatase"].lattice.abc == pytest.approx(
        (phases.ANATASE_A_ANGSTROM, phases.ANATASE_A_ANGSTROM, phases.ANATASE_C_ANGSTROM)
    )
    assert candidates["rutile"].composition.reduced_formula == "TiO2"
    assert len(candidates["rutile"]) == 6 and len(candidates["anatase"]) == 12


def test_known_optimum_is_feasible_and_interior_in_dopant() -> None:
    best_conditions, best_value = true_optimum(SCENARIO, OBJECTIVE, "maximize", CONSTRAINTS)
    assert 0.02 <= best_conditions["dopant_fraction"] <= 0.08
    assert 400.0 < best_conditions["anneal_temperature_c"] < 1000.0
    assert score(SCENARIO, best_conditions, OBJECTIVE, "maximize", CONSTRAINTS) == (best_value, True)
    assert 5.0 <= best_value <= 90.0
    # No point of a dense random design beats it while meeting the constraint.
    rng = np.random.default_rng(0)
    for t, h, x in zip(
        rng.uniform(400, 1000, 3000), rng.uniform(0.5, 12, 3000), rng.uniform(0, 0.1, 3000), strict=True
    ):
        value, feasible = score(SCENARIO, conditions(t, h, x), OBJECTIVE, "maximize", CONSTRAINTS)
        assert not feasible or value <= best_value + 1e-6
    # Doping pays: the best undoped anneal grows clearly smaller anatase.
    undoped = max(
        SCENARIO.quantities(conditions(t, 12.0))[OBJECTIVE]
        for t in np.linspace(400, 1000, 601)
        if SCENARIO.quantities(conditions(t, 12.0))["rutile_fraction"] <= 0.10
    )
    assert best_value > 1.3 * undoped


def test_optimum_is_cached_and_returned_as_a_copy() -> None:
    first = true_optimum(SCENARIO, OBJECTIVE, "maximize", CONSTRAINTS)
    first.conditions["dopant_fraction"] = -1.0
    second = true_optimum(SCENARIO, OBJECTIVE, "maximize", [("rutile_fraction", "<=", 0.1)])
    assert second.conditions["dopant_fraction"] > 0


def test_minimisation_and_bad_arguments() -> None:
    best_conditions, best_value = true_optimum(SCENARIO, "rutile_fraction", "minimize")
    assert best_value == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="unknown objective"):
        true_optimum(SCENARIO, "band_gap_ev", "maximize")
    with pytest.raises(ValueError, match="operator"):
        score(SCENARIO, conditions(700.0), OBJECTIVE, "maximize", [("rutile_fraction", "<", 0.1)])
    with pytest.raises(ValueError, match="no feasible"):
        true_optimum(SCENARIO, OBJECTIVE, "maximize", [("rutile_fraction", ">=", 2.0)])
