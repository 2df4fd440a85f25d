"""Registry of simulated scenarios, selectable by name from a campaign file."""

from __future__ import annotations

from sim_lab.scenarios.base import Parameter, SampleTruth, Scenario
from sim_lab.scenarios.catalyst import CeriaZirconiaCatalyst
from sim_lab.scenarios.nanoparticles import CeriaNanoparticles
from sim_lab.scenarios.ternary import MgZnCeOxideSpread
from sim_lab.scenarios.tio2 import TiO2Calcination

__all__ = [
    "SCENARIOS",
    "CeriaNanoparticles",
    "CeriaZirconiaCatalyst",
    "MgZnCeOxideSpread",
    "Parameter",
    "SampleTruth",
    "Scenario",
    "TiO2Calcination",
    "get_scenario",
]

SCENARIOS: dict[str, type[Scenario]] = {
    scenario.name: scenario
    for scenario in (TiO2Calcination, CeriaZirconiaCatalyst, MgZnCeOxideSpread, CeriaNanoparticles)
}


def get_scenario(name: str) -> Scenario:
    """A scenario with its default ground-truth constants, by registry name."""
    try:
        return SCENARIOS[name]()
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known scenarios: {sorted(SCENARIOS)}") from None
