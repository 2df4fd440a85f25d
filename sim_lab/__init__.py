"""The simulated lab: ground-truth chemistry, signal physics and simulated instrument drivers.

Nothing outside tests and the ``--sim`` path imports this package; it talks to the rest of Crucible only through
``instruments`` (reading types, driver protocol, server). See ``sim_lab/README.md`` for the API.
"""

from sim_lab.drivers import (
    SimulatedDiffractometer,
    SimulatedPDF,
    SimulatedSAXS,
    SimulatedSynthesiser,
    SimulatedXAS,
)
from sim_lab.faults import FaultConfig, FaultyDriver
from sim_lab.pdf import PDFDiffractometer
from sim_lab.saxs import CoreShellSphere, Cylinder, ParticlesInSample, SAXSCamera, Sphere
from sim_lab.scenarios import SCENARIOS, Parameter, SampleTruth, Scenario, get_scenario
from sim_lab.scoring import score, true_optimum
from sim_lab.tray import SampleTray
from sim_lab.xas import XasSpectrometer
from sim_lab.xrd import PhaseInSample, PowderDiffractometer

__all__ = [
    "SCENARIOS",
    "CoreShellSphere",
    "Cylinder",
    "FaultConfig",
    "FaultyDriver",
    "PDFDiffractometer",
    "Parameter",
    "ParticlesInSample",
    "PhaseInSample",
    "PowderDiffractometer",
    "SAXSCamera",
    "SampleTray",
    "SampleTruth",
    "Scenario",
    "SimulatedDiffractometer",
    "SimulatedPDF",
    "SimulatedSAXS",
    "SimulatedSynthesiser",
    "SimulatedXAS",
    "Sphere",
    "XasSpectrometer",
    "get_scenario",
    "score",
    "true_optimum",
]
