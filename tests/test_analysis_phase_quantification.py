"""Quantitative phase analysis recovers the simulated lab's ground truth, with uncertainties that mean something."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.xrd_phase_agent import XRDPhaseAgent
from sim_lab.scenarios import get_scenario
from sim_lab.xrd import PowderDiffractometer

SCENARIO = get_scenario("tio2_calcination")


@pytest.fixture(scope="module")
def agent() -> XRDPhaseAgent:
    return XRDPhaseAgent(["anatase", "rutile"])


@pytest.mark.parametrize(
    "conditions",
    [
        {"anneal_temperature_c": 600.0, "anneal_time_h": 2.0, "dopant_fraction": 0.05},
        {"anneal_temperature_c": 720.0, "anneal_time_h": 2.0, "dopant_fraction": 0.03},
        {"anneal_temperature_c": 750.0, "anneal_time_h": 2.0, "dopant_fraction": 0.03},
    ],
)
def test_fit_recovers_truth(agent: XRDPhaseAgent, conditions: dict[str, float]) -> None:
    truth = SCENARIO.truth(conditions)
    pattern = PowderDiffractometer().measure(truth.phases, 1.0, np.random.default_rng(3))
    found = agent.analyse(pattern).quantities
    expected = truth.quantities
    assert found["rutile_fraction"].value == pytest.approx(expected["rutile_fraction"], abs=0.01)
    assert found["anatase_fraction"].value + found["rutile_fraction"].value == pytest.approx(1.0)
    size = found["anatase_crystallite_size_nm"]
    assert size.value == pytest.approx(expected["anatase_crystallite_size_nm"], rel=0.03)
    assert 0 < size.std < 0.05 * size.value
    assert found["anatase_a_angstrom"].value == pytest.approx(expected["anatase_a_angstrom"], abs=2e-3)
    assert found["anatase_c_angstrom"].value == pytest.approx(expected["anatase_c_angstrom"], abs=5e-3)
    assert found["rwp"].value < 0.1


def test_absent_phase_has_no_size(agent: XRDPhaseAgent) -> None:
    truth = SCENARIO.truth({"anneal_temperature_c": 950.0, "anneal_time_h": 8.0, "dopant_fraction": 0.0})
    pattern = PowderDiffractometer().measure(truth.phases, 1.0, np.random.default_rng(4))
    found = agent.analyse(pattern).quantities
    assert found["anatase_fraction"].value < 0.01
    assert math.isnan(found["anatase_crystallite_size_nm"].value)
    assert found["rutile_crystallite_size_nm"].value == pytest.approx(
        truth.quantities["rutile_crystallite_size_nm"], rel=0.05
    )


def test_fraction_uncertainty_is_honest(agent: XRDPhaseAgent) -> None:
    """Across repeated noisy measurements, most true fractions fall within 3 reported standard deviations."""
    truth = SCENARIO.truth({"anneal_temperature_c": 730.0, "anneal_time_h": 2.0, "dopant_fraction": 0.03})
    within = 0
    for seed in range(6):
        pattern = PowderDiffractometer().measure(truth.phases, 1.0, np.random.default_rng(100 + seed))
        fraction = agent.analyse(pattern).quantities["rutile_fraction"]
        within += abs(fraction.value - truth.quantities["rutile_fraction"]) < 3 * fraction.std
    assert within >= 4


def test_agent_refuses_other_readings(agent: XRDPhaseAgent) -> None:
    from instruments.readings import Spectrum

    with pytest.raises(TypeError, match="diffractograms"):
        agent.tell(Spectrum([1.0, 2.0], [0.1, 0.2]))


def test_unknown_reference_phase_is_named() -> None:
    from analysis.powder_model import Radiation, load_reference_phase

    with pytest.raises(ValueError, match="unknown reference phase 'brookite'"):
        load_reference_phase("brookite", Radiation(1.54056), 80.0)
