"""SAXS shape classification and size fits, and PDF nanoparticle sizes, against the simulated lab's instruments."""

from __future__ import annotations

import numpy as np
import pytest

from agents.analysis_agents import PDFSizeAgent, SAXSShapeAgent
from analysis.pdf_fit import bulk_pdf, fit_nanoparticle
from analysis.saxs_fit import fit_saxs, intensity
from instruments.readings import Diffractogram
from sim_lab import phases
from sim_lab.pdf import PDFDiffractometer
from sim_lab.pdf import bulk_pdf as sim_bulk_pdf
from sim_lab.saxs import CoreShellSphere, Cylinder, ParticlesInSample, SAXSCamera, Sphere
from sim_lab.xrd import PhaseInSample


def test_sphere_form_matches_sasmodels() -> None:
    """Our sphere I(q) is sasmodels' ``sphere`` (Schulz polydispersity) to 1% (1e-4 of I(0) in the minima)."""
    from sasmodels.core import load_model
    from sasmodels.data import empty_data1D
    from sasmodels.direct_model import DirectModel

    q = np.geomspace(0.005, 0.5, 60)
    ours = intensity("sphere", q, scale=0.01 * 25.0 * 1e-4, background_per_cm=0.0, radius_angstrom=60.0,
                     radius_pd=0.1)
    theirs = DirectModel(empty_data1D(q), load_model("sphere"))(
        scale=0.01, background=0.0, radius=60.0, radius_pd=0.1, radius_pd_type="schulz", radius_pd_n=80,
        radius_pd_nsigma=5, sld=1.0, sld_solvent=6.0)
    np.testing.assert_allclose(ours, theirs, rtol=0.01, atol=1e-4 * theirs.max())  # minima: absolute


@pytest.mark.parametrize(
    ("particles", "shape", "sizes"),
    [
        (Sphere(45.0, 0.12), "sphere", {"radius_angstrom": 45.0, "radius_pd": 0.12}),
        (Cylinder(25.0, 180.0, 0.1), "cylinder", {"radius_angstrom": 25.0, "length_angstrom": 180.0}),
        (CoreShellSphere(40.0, 20.0, 0.05), "core_shell_sphere", {"outer_radius_angstrom": 60.0}),
    ],
)
def test_saxs_shape_is_classified_and_sized(particles, shape: str, sizes: dict[str, float]) -> None:
    curve = SAXSCamera().measure([ParticlesInSample(particles, 0.01)], 10.0, np.random.default_rng(1))
    agent = SAXSShapeAgent()
    agent.tell(curve)
    (report,) = agent.report()
    assert agent.last_analysis.best.shape == shape
    assert report.quantities[f"shape_{shape}_probability"].value > 0.95
    for name, true in sizes.items():
        found = report.quantities[name]
        assert found.value == pytest.approx(true, rel=0.05, abs=0.02)
        assert abs(found.value - true) < 4 * found.std + 1e-3
    assert 0.7 < agent.last_analysis.best.reduced_chi2 < 1.4


def test_saxs_refuses_unknown_shape_and_other_readings() -> None:
    curve = SAXSCamera().measure([ParticlesInSample(Sphere(40.0), 0.01)], 1.0, np.random.default_rng(2))
    with pytest.raises(ValueError, match="unknown shape"):
        fit_saxs(curve, ["disc"])
    with pytest.raises(TypeError, match="scattering curves"):
        SAXSShapeAgent().tell(Diffractogram([10.0, 10.02], [1.0, 2.0], 1.54))


def test_bulk_pdf_matches_the_simulated_lab() -> None:
    r = np.arange(1.0, 20.0, 0.01)
    ours = bulk_pdf(phases.rutile(), r, 0.07)
    theirs = sim_bulk_pdf(phases.rutile(), r, 0.07)
    assert np.max(np.abs(ours - theirs)) < 0.02 * np.max(np.abs(theirs))


@pytest.mark.parametrize("diameter_nm", [3.0, 8.0])
def test_pdf_diameter_recovered(diameter_nm: float) -> None:
    structure = phases.anatase()
    pdf = PDFDiffractometer().measure([PhaseInSample("anatase", structure, 1.0, diameter_nm)], 1.0,
                                      np.random.default_rng(3))
    agent = PDFSizeAgent(structure)
    agent.tell(pdf)
    (report,) = agent.report()
    found = report.quantities["particle_diameter_nm"]
    assert found.value == pytest.approx(diameter_nm, rel=0.03)
    assert abs(found.value - diameter_nm) < 4 * found.std
    assert fit_nanoparticle(pdf, structure).scale.value == pytest.approx(1.0, abs=0.03)
