"""The XRD model's physics: anomalous dispersion against tabulated values, the asymmetric profile, the sphere-size
convention shared with PDF and SAXS, every crystal system's free cell, and instrument profiles as files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analysis.instrument_profile import InstrumentProfile
from analysis.peak_profiles import render, split_pseudo_voigt
from analysis.powder_model import SPHERE_FWHM_K, anomalous_scattering, free_lattice_parameters

CU_KA1 = 1.540598

# International Tables for Crystallography Vol. C, Table 4.2.6.8 (Cu Kα): f', f''
TABULATED = {"Ni": (-3.003, 0.509), "Zn": (-1.612, 0.678), "Bi": (-4.108, 8.926)}


@pytest.mark.parametrize("element", sorted(TABULATED))
def test_anomalous_dispersion_matches_the_tables_at_cu_kalpha(element: str) -> None:
    f_prime, f_double_prime = TABULATED[element]
    value = anomalous_scattering((element,), CU_KA1)[0]
    assert value.real == pytest.approx(f_prime, abs=0.2)
    assert value.imag == pytest.approx(f_double_prime, rel=0.05)


def test_nickel_intensity_falls_under_cu_kalpha_as_measured() -> None:
    from pymatgen.core import Lattice, Structure

    from analysis.powder_model import Radiation, load_reference_phase

    nio = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.177), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    phase = load_reference_phase(nio, Radiation(CU_KA1), 90.0, name="NiO")
    d = phase.d_spacings_angstrom(free_lattice_parameters(nio, phase.crystal_system))
    ratio = phase.intensities(d, CU_KA1, anomalous=True) / phase.intensities(d, CU_KA1)
    assert 0.6 < float(np.median(ratio)) < 0.85  # the real_xrd README measured ~0.7x on the Aeris scans


def test_split_profile_keeps_unit_area_and_moves_its_centroid_to_the_wide_side() -> None:
    x = np.linspace(-30.0, 30.0, 600_001)
    for asymmetry in (0.0, 0.2, -0.3):
        profile = split_pseudo_voigt(x, 0.2, 0.1, asymmetry)
        assert np.trapezoid(profile, x) == pytest.approx(1.0, abs=0.01)  # Lorentzian tails beyond ±30° hold <1 %
        assert x[np.argmax(profile)] == pytest.approx(0.0, abs=1e-4)  # the maximum stays at the Bragg angle
        core = np.abs(x) < 3.0
        centroid = np.sum(x[core] * profile[core]) / np.sum(profile[core])
        assert np.sign(round(centroid, 4)) == -np.sign(asymmetry)  # a > 0: the low-angle side is wider
    left, right = split_pseudo_voigt(np.array([-0.12, 0.12]), 0.2, 0.0, 0.25)
    assert left > right


def test_fast_rendering_matches_the_sum_over_reflections() -> None:
    x = np.linspace(10.0, 100.0, 4001)
    rng = np.random.default_rng(4)
    centres, heights = rng.uniform(5.0, 105.0, 120), rng.uniform(0.1, 1.0, 120)

    def widths(two_theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        theta = np.radians(two_theta) / 2
        return 0.15 + 0.05 * np.tan(theta), 0.05 / np.cos(theta), np.clip(0.1 / np.tan(2 * theta), -0.6, 0.6)

    direct = np.zeros_like(x)
    g, lo, a = widths(centres)
    for k in range(centres.size):
        direct += heights[k] * split_pseudo_voigt(x - centres[k], g[k], lo[k], a[k])
    fast = render(x, centres, heights, widths)
    assert np.max(np.abs(fast - direct)) < 0.005 * direct.max()


def test_xrd_sizes_are_sphere_diameters_as_pdf_and_saxs_mean_them() -> None:
    """The size-broadened XRD line of a sphere is the Fourier transform of its characteristic function γ0, the
    same envelope the PDF fit and simulator apply; its FWHM in s = 2 sinθ / λ is K / D with D the diameter."""
    from analysis.pdf_fit import sphere_envelope as fit_envelope
    from sim_lab.pdf import sphere_envelope as sim_envelope
    from sim_lab.xrd import SPHERE_FWHM_K as SIMULATED_K

    diameter = 100.0
    r = np.linspace(0.0, diameter, 20_001)
    assert np.allclose(fit_envelope(r, diameter), sim_envelope(r, diameter))
    s = np.linspace(0.0, 3.0 / diameter, 3001)
    line = np.array([np.trapezoid(fit_envelope(r, diameter) * np.cos(2 * np.pi * r * si), r) for si in s])
    half = np.argmax(line < line[0] / 2)
    s_half = np.interp(line[0] / 2, line[half : half - 2 : -1], s[half : half - 2 : -1])
    measured_k = 2 * s_half * diameter
    assert measured_k == pytest.approx(1.107, abs=0.002)
    assert SPHERE_FWHM_K == SIMULATED_K == pytest.approx(measured_k, abs=0.002)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ((5.0, 6.0, 7.0, 90.0, 104.0, 90.0), {"a", "b", "c", "beta"}),
        ((5.0, 6.0, 7.0, 80.0, 95.0, 101.0), {"a", "b", "c", "alpha", "beta", "gamma"}),
        ((5.0, 5.0, 5.0, 70.0, 70.0, 70.0), {"a", "alpha"}),
    ],
)
def test_every_crystal_system_has_free_cell_parameters(cell: tuple[float, ...], expected: set[str]) -> None:
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    structure = Structure(Lattice.from_parameters(*cell), ["Si"], [[0.1, 0.2, 0.3]])
    system = SpacegroupAnalyzer(structure, symprec=0.01).get_crystal_system()
    if expected == {"a", "alpha"}:
        system = "trigonal"  # a one-atom rhombohedral cell: as R-3m in rhombohedral axes
    assert set(free_lattice_parameters(structure, system)) == expected


def test_instrument_profile_round_trips_through_its_file(tmp_path: Path) -> None:
    profile = InstrumentProfile(
        name="bench", caglioti_uvw_deg2=(0.01, -0.004, 0.03), asymmetry=0.1, kbeta_ratio=0.006,
        zero_shift_deg=0.08, fraction_model_error=0.1, source="test",
    )
    path = profile.save(tmp_path / "bench.json")
    assert InstrumentProfile.load(path) == profile
    shipped = InstrumentProfile.load("aeris")
    assert 0.1 < shipped.caglioti_uvw_deg2[2] ** 0.5 < 0.3  # the Aeris's real ~0.2° widths, not the 0.05° default
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**profile.to_dict(), "kbeta_ratio": 2.0}))
    with pytest.raises(ValueError, match="kbeta_ratio"):
        InstrumentProfile.load(bad)
    with pytest.raises(ValueError, match="shipped profiles: aeris"):
        InstrumentProfile.load("no-such-instrument")
