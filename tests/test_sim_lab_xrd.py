"""The simulated powder diffractometer checked against crystallography computed independently of pymatgen."""

from __future__ import annotations

import math

import numpy as np
import pytest

from instruments.readings import Diffractogram
from sim_lab import phases
from sim_lab.xrd import (
    CU_KA1_ANGSTROM,
    CU_KA2_ANGSTROM,
    SPHERE_FWHM_K,
    PhaseInSample,
    PowderDiffractometer,
    phase_scale,
    tch_fwhm_and_eta,
)

A_ANATASE, C_ANATASE = phases.ANATASE_A_ANGSTROM, phases.ANATASE_C_ANGSTROM

# A fine-stepped, monochromatic instrument with negligible instrumental width and no background, so that
# peak positions and widths can be read straight off the noise-free expected counts.
SHARP = PowderDiffractometer(
    wavelength_ka2_angstrom=None,
    step_deg=0.002,
    caglioti_u_deg2=0.0,
    caglioti_v_deg2=0.0,
    caglioti_w_deg2=1e-10,
    background_chebyshev=(0.0,),
)
# The default instrument, monochromatic, fine-stepped and without background.
MONO = {"wavelength_ka2_angstrom": None, "step_deg": 0.002, "background_chebyshev": (0.0,)}


def bragg_two_theta_deg(hkl: tuple[int, int, int], a: float, c: float, wavelength: float) -> float:
    """Tetragonal d-spacing 1/d² = (h² + k²)/a² + l²/c² and Bragg's law 2θ = 2 asin(λ / 2d), in degrees."""
    h, k, l = hkl  # noqa: E741
    d = 1.0 / math.sqrt((h * h + k * k) / a**2 + l * l / c**2)
    return math.degrees(2.0 * math.asin(wavelength / (2.0 * d)))


def peak_position_deg(x: np.ndarray, y: np.ndarray, near_deg: float, window_deg: float = 0.15) -> float:
    """The local maximum of ``y`` within ``window_deg`` of ``near_deg``, refined by a 3-point parabola."""
    inside = np.flatnonzero(np.abs(x - near_deg) <= window_deg)
    i = inside[np.argmax(y[inside])]
    y0, y1, y2 = y[i - 1], y[i], y[i + 1]
    offset = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    return float(x[i] + offset * (x[1] - x[0]))


def fwhm_deg(x: np.ndarray, y: np.ndarray, near_deg: float) -> float:
    """Full width at half maximum of the peak nearest ``near_deg``, interpolating the crossings linearly."""
    peak = int(np.argmin(np.abs(x - peak_position_deg(x, y, near_deg))))
    half = y[peak] / 2.0
    left = peak
    while y[left] > half:
        left -= 1
    right = peak
    while y[right] > half:
        right += 1
    x_left = x[left] + (half - y[left]) / (y[left + 1] - y[left]) * (x[left + 1] - x[left])
    x_right = x[right - 1] + (half - y[right - 1]) / (y[right] - y[right - 1]) * (x[right] - x[right - 1])
    return float(x_right - x_left)


def anatase_sample(size_nm: float = 200.0, a: float = 3.7852, c: float = 9.5139) -> list[PhaseInSample]:
    return [PhaseInSample("anatase", phases.anatase(a, c), 1.0, size_nm, 0.0)]


def rutile_sample(size_nm: float = 200.0) -> list[PhaseInSample]:
    return [PhaseInSample("rutile", phases.rutile(), 1.0, size_nm, 0.0)]


@pytest.mark.parametrize(
    ("sample", "hkl", "a", "c"),
    [
        (anatase_sample, (1, 0, 1), phases.ANATASE_A_ANGSTROM, phases.ANATASE_C_ANGSTROM),
        (anatase_sample, (0, 0, 4), phases.ANATASE_A_ANGSTROM, phases.ANATASE_C_ANGSTROM),
        (anatase_sample, (2, 0, 0), phases.ANATASE_A_ANGSTROM, phases.ANATASE_C_ANGSTROM),
        (rutile_sample, (1, 1, 0), phases.RUTILE_A_ANGSTROM, phases.RUTILE_C_ANGSTROM),
        (rutile_sample, (1, 0, 1), phases.RUTILE_A_ANGSTROM, phases.RUTILE_C_ANGSTROM),
    ],
)
def test_peak_positions_follow_braggs_law(sample, hkl, a, c) -> None:
    expected = bragg_two_theta_deg(hkl, a, c, CU_KA1_ANGSTROM)
    x = SHARP.two_theta_deg
    measured = peak_position_deg(x, SHARP.expected_counts(sample(), 1.0), expected)
    assert measured == pytest.approx(expected, abs=2e-3)


def test_anatase_101_is_the_strongest_line_near_25_3_degrees() -> None:
    x = SHARP.two_theta_deg
    y = SHARP.expected_counts(anatase_sample(), 1.0)
    assert x[np.argmax(y)] == pytest.approx(25.30, abs=0.02)


def test_vegard_expanded_cell_moves_peaks_to_bragg_positions() -> None:
    cell = phases.anatase_cell(0.1)
    x = SHARP.two_theta_deg
    y = SHARP.expected_counts(anatase_sample(a=cell.a_angstrom, c=cell.c_angstrom), 1.0)
    for hkl in [(1, 0, 1), (0, 0, 4), (2, 0, 0)]:
        expected = bragg_two_theta_deg(hkl, cell.a_angstrom, cell.c_angstrom, CU_KA1_ANGSTROM)
        assert peak_position_deg(x, y, expected) == pytest.approx(expected, abs=2e-3)


def test_zero_shift_moves_every_peak_by_the_same_angle() -> None:
    shifted = PowderDiffractometer(**{**SHARP.__dict__, "zero_shift_deg": 0.05})
    x = SHARP.two_theta_deg
    y0 = SHARP.expected_counts(anatase_sample(), 1.0)
    y1 = shifted.expected_counts(anatase_sample(), 1.0)
    for near in (25.3, 48.0, 62.7):
        shift = peak_position_deg(x, y1, near + 0.05) - peak_position_deg(x, y0, near)
        assert shift == pytest.approx(0.05, abs=1e-3)


@pytest.mark.parametrize("size_nm", [8.0, 15.0, 30.0, 60.0])
def test_scherrer_width_of_an_isolated_peak(size_nm: float) -> None:
    # Anatase 200 (48.0°) has no neighbour within 5°; with no instrumental width the FWHM is Scherrer's (spheres).
    two_theta = bragg_two_theta_deg((2, 0, 0), A_ANATASE, C_ANATASE, CU_KA1_ANGSTROM)
    theta = math.radians(two_theta / 2.0)
    predicted = math.degrees(SPHERE_FWHM_K * CU_KA1_ANGSTROM / (10.0 * size_nm * math.cos(theta)))
    x = SHARP.two_theta_deg
    measured = fwhm_deg(x, SHARP.expected_counts(anatase_sample(size_nm), 1.0), two_theta)
    assert measured == pytest.approx(predicted, rel=0.03)


def test_peaks_widen_as_crystallites_shrink_on_a_real_instrument() -> None:
    instrument = PowderDiffractometer(**MONO)
    x = instrument.two_theta_deg
    widths = [fwhm_deg(x, instrument.expected_counts(anatase_sample(s), 1.0), 48.04) for s in (80, 40, 20, 10)]
    assert all(b > a for a, b in zip(widths, widths[1:], strict=False))
    # The TCH width of the instrumental Gaussian and the Scherrer Lorentzian, within 2 %.
    theta = math.radians(48.04 / 2.0)
    gaussian = math.sqrt(0.004 * math.tan(theta) ** 2 - 0.002 * math.tan(theta) + 0.002)
    for size_nm, measured in zip((80, 40, 20, 10), widths, strict=True):
        lorentzian = math.degrees(SPHERE_FWHM_K * CU_KA1_ANGSTROM / (10.0 * size_nm * math.cos(theta)))
        total, _ = tch_fwhm_and_eta(np.array(gaussian), np.array(lorentzian))
        assert measured == pytest.approx(float(total), rel=0.02)


@pytest.mark.parametrize("ratio", [0.05, 0.3, 1.0, 3.0, 20.0])
def test_tch_width_approximates_the_voigt_width(ratio: float) -> None:
    # Olivero & Longbothum (1977): f_V ≈ 0.5346 f_L + sqrt(0.2166 f_L² + f_G²), good to 0.02 %.
    gaussian, lorentzian = 0.1, 0.1 * ratio
    voigt = 0.5346 * lorentzian + math.sqrt(0.2166 * lorentzian**2 + gaussian**2)
    total, eta = tch_fwhm_and_eta(np.array(gaussian), np.array(lorentzian))
    assert float(total) == pytest.approx(voigt, rel=0.01)
    assert 0.0 <= float(eta) <= 1.0


def test_profiles_have_unit_area() -> None:
    # One reflection's integrated counts equal flux · t · S · I (tails beyond the scan are tiny for 200 nm).
    instrument = PowderDiffractometer(**MONO)
    sample = anatase_sample()
    refl = instrument.reflections(sample[0])
    total = instrument.expected_counts(sample, 1.0).sum() * instrument.step_deg
    inside = (refl.two_theta_deg > 10.5) & (refl.two_theta_deg < 79.5)
    expected = instrument.flux * phase_scale(sample[0]) * refl.intensity[inside].sum()
    assert total == pytest.approx(expected, rel=0.01)


def test_ka2_doublet_shows_a_second_maximum_at_the_ka2_angle() -> None:
    # Anatase 220 at 70.3°: the doublet is split by ~0.2°, more than the width of a 200 nm peak.
    instrument = PowderDiffractometer(step_deg=0.002, background_chebyshev=(0.0,))
    x = instrument.two_theta_deg
    y = instrument.expected_counts(anatase_sample(), 1.0)
    alpha1 = bragg_two_theta_deg((2, 2, 0), A_ANATASE, C_ANATASE, CU_KA1_ANGSTROM)
    alpha2 = bragg_two_theta_deg((2, 2, 0), A_ANATASE, C_ANATASE, CU_KA2_ANGSTROM)
    assert alpha2 - alpha1 == pytest.approx(0.20, abs=0.02)
    assert peak_position_deg(x, y, alpha2, window_deg=0.05) == pytest.approx(alpha2, abs=5e-3)
    height1, height2 = y[np.argmin(np.abs(x - alpha1))], y[np.argmin(np.abs(x - alpha2))]
    assert height2 / height1 == pytest.approx(0.5, abs=0.08)
    # Without Kα2 the same place is the falling flank of a single peak.
    mono = PowderDiffractometer(**MONO)
    y_mono = mono.expected_counts(anatase_sample(), 1.0)
    near = np.abs(x - alpha2) < 0.05
    assert np.all(np.diff(y_mono[near]) < 0)


def test_counts_are_poisson_variance_equals_mean() -> None:
    instrument = PowderDiffractometer()
    sample = anatase_sample(20.0)
    expected = instrument.expected_counts(sample, 1.0)
    rng = np.random.default_rng(1)
    observed = np.stack([instrument.measure(sample, 1.0, rng).counts for _ in range(50)])
    assert np.all(observed == np.round(observed)) and np.all(observed >= 0)
    assert np.mean(observed.mean(axis=0) / expected) == pytest.approx(1.0, abs=0.005)
    assert np.median(observed.var(axis=0, ddof=1) / expected) == pytest.approx(1.0, abs=0.05)


def test_counting_time_scales_counts_linearly() -> None:
    instrument = PowderDiffractometer()
    sample = anatase_sample(20.0)
    once = instrument.expected_counts(sample, 1.0)
    np.testing.assert_allclose(instrument.expected_counts(sample, 4.0), 4.0 * once)


def test_default_instrument_gives_lab_like_count_levels() -> None:
    y = PowderDiffractometer().expected_counts(anatase_sample(20.0), 1.0)
    assert 5_000 <= y.max() <= 20_000
    assert 100 <= np.percentile(y, 10) <= 300


def test_hill_howard_scale_uses_cell_mass_and_volume() -> None:
    phase = anatase_sample()[0]
    cell_mass_amu = 4 * (47.867 + 2 * 15.999)  # Z = 4 formula units of TiO2
    volume = phases.ANATASE_A_ANGSTROM**2 * phases.ANATASE_C_ANGSTROM
    assert phase_scale(phase) == pytest.approx(1.0 / (cell_mass_amu * volume), rel=1e-4)


def test_weight_fractions_round_trip_through_scale_factors() -> None:
    instrument = PowderDiffractometer()
    anatase = PhaseInSample("anatase", phases.anatase(), 0.3, 25.0, 5e-4)
    rutile = PhaseInSample("rutile", phases.rutile(), 0.7, 40.0, 2e-4)
    counts = instrument.measure([anatase, rutile], 10.0, np.random.default_rng(3)).counts
    # Least squares on unit-scale phase patterns (S = 1) plus the known background recovers S_p ...
    unit = []
    for phase in (anatase, rutile):
        unit.append(instrument.phase_signal(phase) / phase_scale(phase))
    design = instrument.flux * 10.0 * np.stack(unit, axis=1)
    residual = counts - instrument.flux * 10.0 * instrument.background()
    scales, *_ = np.linalg.lstsq(design / np.sqrt(counts)[:, None], residual / np.sqrt(counts), rcond=None)
    # ... and w_p = S_p m_p V_p / Σ S m V recovers the weight fractions.
    mass_volume = [float(p.structure.composition.weight) * p.structure.volume for p in (anatase, rutile)]
    weights = scales * mass_volume / np.sum(scales * mass_volume)
    assert weights == pytest.approx([0.3, 0.7], abs=0.005)


def test_measure_returns_a_complete_diffractogram() -> None:
    instrument = PowderDiffractometer()
    reading = instrument.measure(anatase_sample(20.0), 2.0, np.random.default_rng(0), sample_id="s-1")
    assert reading.two_theta_deg[0] == pytest.approx(10.0)
    assert reading.two_theta_deg[-1] == pytest.approx(80.0)
    assert reading.two_theta_deg.size == 3501
    assert reading.wavelength_angstrom == CU_KA1_ANGSTROM
    assert reading.wavelength_ka2_angstrom == CU_KA2_ANGSTROM
    assert reading.ka2_ratio == 0.5
    assert reading.counting_time_s == 2.0
    assert reading.sample_id == "s-1"
    again = Diffractogram.from_dict(reading.as_dict())
    np.testing.assert_array_equal(again.counts, reading.counts)


def test_reflections_are_cached_per_cell() -> None:
    instrument = PowderDiffractometer()
    first = instrument.reflections(anatase_sample()[0])
    assert instrument.reflections(anatase_sample()[0]) is first
    other = instrument.reflections(anatase_sample(a=3.79)[0])
    assert other is not first and other.two_theta_deg[0] < first.two_theta_deg[0]


def test_invalid_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="Caglioti"):
        PowderDiffractometer(caglioti_u_deg2=0.0, caglioti_v_deg2=-1.0, caglioti_w_deg2=0.0)
    with pytest.raises(ValueError, match="two_theta"):
        PowderDiffractometer(two_theta_min_deg=80.0, two_theta_max_deg=10.0)
    with pytest.raises(ValueError, match="weight_fraction"):
        PhaseInSample("anatase", phases.anatase(), 1.5, 10.0)
    with pytest.raises(ValueError, match="counting_time_s"):
        PowderDiffractometer().expected_counts(anatase_sample(), 0.0)
