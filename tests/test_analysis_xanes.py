"""XANES linear combination fitting: oxidation-state fractions of simulated Ce L3 spectra from the shipped standards.

The spectra come from the simulated beamline (``sim_lab.xas``) with its own noise and a monochromator offset the
standards do not have; the fit must recover the fractions within their stated uncertainty, find the offset, and
give intervals that shrink with counting time.
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.xanes_lcf import fit_xanes_lcf, load_standards, shipped_edges
from instruments.readings import Spectrum
from sim_lab.xas import XasSpectrometer


def test_fractions_and_shift_are_recovered_within_their_uncertainty() -> None:
    standards = load_standards("Ce_L3")
    z_scores = []
    for seed, ce3 in enumerate(np.linspace(0.05, 0.6, 12)):
        beamline = XasSpectrometer(energy_shift_ev=0.8)
        spectrum = beamline.measure("Ce_L3", {"Ce3+": ce3, "Ce4+": 1 - ce3}, 1.0, np.random.default_rng(seed))
        fit = fit_xanes_lcf(spectrum, standards)
        found = fit.fractions["ce3"]
        z_scores.append((found.value - ce3) / found.std)
        assert fit.fractions["ce3"].value + fit.fractions["ce4"].value == pytest.approx(1.0)
        assert fit.energy_shift_ev.value == pytest.approx(-0.8, abs=0.05)  # the standards' grid moves onto the data
        assert fit.weight_sum == pytest.approx(1.0, abs=0.02)
    assert np.sqrt(np.mean(np.square(z_scores))) < 2.0, z_scores  # honest intervals (RMS z near 1)


def test_uncertainty_shrinks_with_counting_time() -> None:
    standards = load_standards("Ce_L3")
    stds = []
    for exposure in (0.05, 0.5, 5.0):
        spectrum = XasSpectrometer().measure("Ce_L3", {"Ce3+": 0.3, "Ce4+": 0.7}, exposure, np.random.default_rng(4))
        stds.append(fit_xanes_lcf(spectrum, standards).fractions["ce3"].std)
    assert stds[0] > 2.5 * stds[1] > 2.5**2 * stds[2] * 0.8  # about sqrt(10) per decade of counting time


def test_bad_inputs_are_refused_with_a_reason(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert shipped_edges() == ["Ce_L3", "Ni_K"]
    with pytest.raises(ValueError, match="no shipped XANES standards for edge 'Fe_K'"):
        load_standards("Fe_K")
    broken = tmp_path / "mine.json"
    broken.write_text('{"energy_ev": [1, 2, 3], "states": {"a": {"absorption": [0, 1]}}}')
    with pytest.raises(ValueError, match="cannot be read|need two or more"):
        load_standards(broken)
    standards = load_standards("Ce_L3")
    raw = Spectrum(standards.energy_ev, standards.spectra["ce3"], normalised=False)
    with pytest.raises(ValueError, match="normalised"):
        fit_xanes_lcf(raw, standards)
    elsewhere = Spectrum(np.linspace(8300, 8400, 200), np.ones(200))
    with pytest.raises(ValueError, match="overlaps"):
        fit_xanes_lcf(elsewhere, standards)
