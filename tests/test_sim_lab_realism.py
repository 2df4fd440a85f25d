"""The simulated diffractometer's real-instrument effects: anomalous dispersion, axial asymmetry, a Kβ leak,
Brindley microabsorption, preferred orientation and particle statistics, each off by default."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from sim_lab.xrd import CU_KA1_ANGSTROM, PhaseInSample, PowderDiffractometer

NIO = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.177), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
CEO2 = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.411), ["Ce", "O"], [[0, 0, 0], [0.25, 0.25, 0.25]])
PLAIN = PowderDiffractometer(wavelength_ka2_angstrom=None, two_theta_min_deg=20.0, two_theta_max_deg=90.0,
                             step_deg=0.01, background_chebyshev=(0.0,))


def peak_area(instrument: PowderDiffractometer, sample: list[PhaseInSample], low: float, high: float) -> float:
    x = instrument.two_theta_deg
    counts = instrument.expected_counts(sample, 1.0)
    keep = (x > low) & (x < high)
    return float(np.trapezoid(counts[keep], x[keep]))


def test_anomalous_dispersion_weakens_nickel_oxide_under_cu_kalpha() -> None:
    sample = [PhaseInSample("NiO", NIO, 1.0, 50.0)]
    plain = peak_area(PLAIN, sample, 42.0, 44.5)  # NiO 200
    dispersed = peak_area(PowderDiffractometer(**{**PLAIN.__dict__, "anomalous": True}), sample, 42.0, 44.5)
    assert 0.6 < dispersed / plain < 0.85


def test_asymmetry_widens_the_low_angle_side_and_kbeta_adds_a_small_line() -> None:
    sample = [PhaseInSample("NiO", NIO, 1.0, 80.0)]
    asymmetric = PowderDiffractometer(**{**PLAIN.__dict__, "asymmetry": 0.15, "kbeta_angstrom": 1.392218,
                                         "kbeta_ratio": 0.01})
    x, counts = asymmetric.two_theta_deg, asymmetric.expected_counts(sample, 1.0)
    peak = int(np.argmax(np.where((x > 36.0) & (x < 38.5), counts, 0.0)))  # NiO 111 near 37.3°
    half = counts[peak] / 2
    left = x[peak] - x[peak - np.argmax(counts[peak::-1] < half)]
    right = x[peak + np.argmax(counts[peak:] < half)] - x[peak]
    assert left > 1.2 * right
    kbeta_111 = 2 * np.degrees(np.arcsin(1.392218 / (2 * 4.177 / np.sqrt(3))))
    line = peak_area(asymmetric, sample, kbeta_111 - 0.3, kbeta_111 + 0.3)
    parent = peak_area(asymmetric, sample, 36.3, 38.3)
    assert 0.004 < line / parent < 0.02


def test_microabsorption_makes_the_stronger_absorber_look_scarcer() -> None:
    sample = [PhaseInSample("NiO", NIO, 0.5, 50.0), PhaseInSample("CeO2", CEO2, 0.5, 50.0)]
    grains = PowderDiffractometer(**{**PLAIN.__dict__, "grain_size_um": 5.0})
    ratio_plain = peak_area(PLAIN, sample, 28.0, 29.5) / peak_area(PLAIN, sample, 42.5, 44.0)  # CeO2 111 / NiO 200
    ratio_grains = peak_area(grains, sample, 28.0, 29.5) / peak_area(grains, sample, 42.5, 44.0)
    assert ratio_grains < 0.9 * ratio_plain


def test_preferred_orientation_and_particle_statistics_move_intensities_but_not_positions() -> None:
    textured = [PhaseInSample("NiO", NIO, 1.0, 50.0, preferred_orientation_hkl=(1, 1, 1), march_dollase_r=0.7)]
    plain = [PhaseInSample("NiO", NIO, 1.0, 50.0)]
    ratio = peak_area(PLAIN, textured, 36.3, 38.3) / peak_area(PLAIN, textured, 42.5, 44.0)
    assert ratio > 1.2 * peak_area(PLAIN, plain, 36.3, 38.3) / peak_area(PLAIN, plain, 42.5, 44.0)
    grainy = PowderDiffractometer(**{**PLAIN.__dict__, "particle_statistics": 0.2, "particle_seed": 3})
    a, b = grainy.expected_counts(plain, 1.0), PLAIN.expected_counts(plain, 1.0)
    assert not np.allclose(a, b)
    window = (PLAIN.two_theta_deg > 42.5) & (PLAIN.two_theta_deg < 44.0)
    assert np.argmax(a[window]) == pytest.approx(np.argmax(b[window]), abs=1)  # NiO 200 stays where it was
    assert np.allclose(a, grainy.expected_counts(plain, 1.0))  # one sample's grains: the same every scan
    assert CU_KA1_ANGSTROM == PLAIN.wavelength_angstrom
