"""SAXS form factors against sasmodels (the community reference implementation) to 1e-3 relative."""

from __future__ import annotations

import math

import numpy as np
import pytest

sasmodels_core = pytest.importorskip("sasmodels.core")
from sasmodels.direct_model import call_kernel  # noqa: E402

from sim_lab import phases  # noqa: E402
from sim_lab.saxs import (  # noqa: E402
    CoreShellSphere,
    Cylinder,
    ParticlesInSample,
    SAXSCamera,
    Sphere,
    schulz_quadrature,
    xray_sld,
)

Q = np.geomspace(0.003, 0.5, 120)
FINE_PD = {"pd_type": "schulz", "pd_n": 400, "pd_nsigma": 8}


def sasmodels_iq(model: str, **parameters: float) -> np.ndarray:
    kernel = sasmodels_core.load_model(model, dtype="double").make_kernel([Q])
    return call_kernel(kernel, {"scale": 1.0, "background": 0.0, **parameters})


def polydisperse(name: str, width: float, points: int = 400) -> dict[str, float | str]:
    """sasmodels' Schulz dispersion, sampled finely enough that its discretisation error is negligible."""
    return {f"{name}_pd": width, **{f"{name}_{k}": v for k, v in FINE_PD.items()}, f"{name}_pd_n": points}


@pytest.mark.parametrize("pd", [0.0, 0.05, 0.2, 0.35])
def test_sphere_matches_sasmodels(pd: float) -> None:
    mine = Sphere(45.0, pd, sld=6.0, sld_solvent=1.0).intensity_per_cm(Q)
    reference = sasmodels_iq("sphere", radius=45.0, sld=6.0, sld_solvent=1.0, **polydisperse("radius", pd))
    np.testing.assert_allclose(mine, reference, rtol=1e-3)


@pytest.mark.parametrize("pd", [0.0, 0.1, 0.25])
def test_core_shell_sphere_matches_sasmodels(pd: float) -> None:
    mine = CoreShellSphere(30.0, 12.0, pd, sld_core=50.0, sld_shell=28.0, sld_solvent=8.0).intensity_per_cm(Q)
    reference = sasmodels_iq(
        "core_shell_sphere",
        radius=30.0,
        thickness=12.0,
        sld_core=50.0,
        sld_shell=28.0,
        sld_solvent=8.0,
        **polydisperse("radius", pd),
    )
    np.testing.assert_allclose(mine, reference, rtol=1e-3)


@pytest.mark.parametrize(("radius_pd", "length_pd"), [(0.0, 0.0), (0.15, 0.0), (0.1, 0.2)])
def test_cylinder_matches_sasmodels(radius_pd: float, length_pd: float) -> None:
    mine = Cylinder(20.0, 160.0, radius_pd, length_pd, sld=4.0, sld_solvent=1.0).intensity_per_cm(Q)
    reference = sasmodels_iq(
        "cylinder",
        radius=20.0,
        length=160.0,
        sld=4.0,
        sld_solvent=1.0,
        **polydisperse("radius", radius_pd, 100),
        **polydisperse("length", length_pd, 100),
    )
    np.testing.assert_allclose(mine, reference, rtol=1e-3)


def test_guinier_and_porod_limits_of_spheres() -> None:
    # Independent of sasmodels: I(0) = 1e-4 Δρ² V and, at large q, Porod I ≈ 1e-4 · 2π Δρ² (S/V) / q⁴.
    radius, contrast = 50.0, 5.0
    sphere = Sphere(radius, 0.0, sld=6.0, sld_solvent=1.0)
    volume = 4.0 / 3.0 * math.pi * radius**3
    assert sphere.intensity_per_cm(np.array([1e-5]))[0] == pytest.approx(1e-4 * contrast**2 * volume, rel=1e-6)
    rg = math.sqrt(3.0 / 5.0) * radius
    q = np.array([0.3 / rg])
    assert sphere.intensity_per_cm(q)[0] == pytest.approx(
        1e-4 * contrast**2 * volume * math.exp(-((q[0] * rg) ** 2) / 3), rel=1e-3
    )
    q_high = np.linspace(0.4, 0.5, 400)
    porod = 1e-4 * 2 * math.pi * contrast**2 * (3.0 / radius) / q_high**4
    averaged = Sphere(radius, 0.1, sld=6.0, sld_solvent=1.0).intensity_per_cm(q_high)
    assert np.mean(averaged / porod) == pytest.approx(1.0, rel=0.05)


def test_schulz_quadrature_has_the_right_moments() -> None:
    x, w = schulz_quadrature(40.0, 0.2)
    mean = float(x @ w)
    sd = math.sqrt(float((x - mean) ** 2 @ w))
    assert w.sum() == pytest.approx(1.0)
    assert mean == pytest.approx(40.0, rel=1e-6)
    assert sd / mean == pytest.approx(0.2, rel=1e-4)


def test_xray_sld_of_ceria() -> None:
    # CeO2: 4 × (58 + 2 × 8) electrons per 5.411³ Å³ cell, times r_e.
    expected = 2.8179403262e-5 * 4 * 74 / 5.411**3 * 1e6
    assert xray_sld(phases.fluorite()) == pytest.approx(expected)
    assert 50 < expected < 55


def test_camera_noise_and_uncertainties() -> None:
    camera = SAXSCamera()
    sample = [ParticlesInSample(Sphere(40.0, 0.1, sld=50.0, sld_solvent=8.0), 0.002)]
    expected = camera.expected_intensity(sample)
    curves = [camera.measure(sample, 10.0, np.random.default_rng(i)) for i in range(40)]
    intensities = np.stack([c.intensity for c in curves])
    np.testing.assert_allclose(intensities.mean(axis=0), expected, rtol=0.05)
    z = (intensities - expected) / curves[0].sigma
    assert np.std(z) == pytest.approx(1.0, abs=0.1)
    assert curves[0].q_inv_angstrom[0] == pytest.approx(0.005) and curves[0].q_inv_angstrom.size == 200
    assert np.median(camera.expected_intensity([])) == pytest.approx(camera.background_per_cm)
