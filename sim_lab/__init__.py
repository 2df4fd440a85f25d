"""The simulated lab: ground-truth chemistry, signal physics and simulated instrument drivers.

Nothing outside tests and the ``--sim`` path imports this package; it talks to the rest of Crucible only through
``instruments`` (reading types, driver protocol, server). See ``sim_lab/README.md`` for the API.
"""

from sim_lab.drivers import SimulatedDiffractometer, SimulatedSynthesiser
from sim_lab.scenarios import SCENARIOS, Parameter, SampleTruth, Scenario, get_scenario
from sim_lab.scoring import score, true_optimum
from sim_lab.tray import SampleTray
from sim_lab.xrd import PhaseInSample, PowderDiffractometer

__all__ = [
    "SCENARIOS",
    "Parameter",
    "PhaseInSample",
    "PowderDiffractometer",
    "SampleTray",
    "SampleTruth",
    "Scenario",
    "SimulatedDiffractometer",
    "SimulatedSynthesiser",
    "get_scenario",
    "score",
    "true_optimum",
]
