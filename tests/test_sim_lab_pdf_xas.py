"""PDF from atomic positions checked against crystal geometry and an explicit cluster; XANES by linear combination."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import nnls
from scipy.signal import find_peaks
from scipy.spatial.distance import pdist

from sim_lab import phases
from sim_lab.pdf import PDFDiffractometer, bulk_pdf, sphere_envelope
from sim_lab.xas import EDGES, XasSpectrometer, reference_spectrum
from sim_lab.xrd import PhaseInSample

A = 5.411
CERIA = phases.fluorite(A, "Ce")
RHO0 = 12 / A**3


def ceria(size_nm: float) -> list[PhaseInSample]:
    return [PhaseInSample("ceria", CERIA, 1.0, size_nm)]


def test_pdf_peaks_sit_at_fluorite_distances() -> None:
    reading = PDFDiffractometer().measure(ceria(10.0), 1.0, rng=None)
    r, g = reading.r_angstrom, reading.g_r
    peaks = r[find_peaks(g, height=2.0)[0]]
    for distance in (A * math.sqrt(3) / 4, A / math.sqrt(2), A * math.sqrt(11) / 4, A):  # Ce–O, Ce–Ce, Ce–O, Ce–Ce
        assert np.min(np.abs(peaks - distance)) < 0.02


def test_pdf_baseline_below_the_first_neighbour_is_minus_four_pi_rho_r() -> None:
    r = np.linspace(0.3, 1.8, 20)
    g = PDFDiffractometer().ideal_pdf(ceria(3.0), r)
    np.testing.assert_allclose(g, -4 * math.pi * RHO0 * r * sphere_envelope(r, 30.0), rtol=1e-6)


def test_first_shell_holds_the_coordination_number() -> None:
    # Each Ce has 8 O and each O 4 Ce at a√3/4; X-ray weighted per atom: (4·8 + 8·4) Z_Ce Z_O / ⟨Z⟩² / 12.
    sigma = 0.03
    r = np.arange(2.05, 2.55, 0.001)
    pair_density = (bulk_pdf(CERIA, r, sigma) + 4 * math.pi * RHO0 * r) * r
    mean_z = (4 * 58 + 8 * 8) / 12
    expected = 64 * 58 * 8 / mean_z**2 / 12
    assert np.trapezoid(pair_density, r) == pytest.approx(expected, rel=0.01)


def test_spherical_envelope_agrees_with_an_explicit_cluster() -> None:
    # An independent route: cut a 30 Å sphere of atoms from the crystal and histogram its pair distances.
    diameter = 30.0
    supercell = CERIA * (8, 8, 8)
    coords = supercell.cart_coords - supercell.lattice.get_cartesian_coords([0.5, 0.5, 0.5])
    inside = np.linalg.norm(coords, axis=1) <= diameter / 2
    z = np.array([site.specie.Z for site in supercell])[inside]
    distances = pdist(coords[inside])
    i, j = np.triu_indices(int(inside.sum()), k=1)
    weights = 2 * z[i] * z[j] / z.mean() ** 2 / inside.sum()
    sigma = 0.02  # narrow peaks, so that the windows below cut between shells
    for low, high in [(3.5, 4.2), (7.4, 7.85), (10.6, 10.95)]:  # single shells at 3.83, 7.65 and 10.82 Å
        cluster = weights[(distances > low) & (distances < high)].sum()
        r = np.arange(low, high, 0.001)
        model = np.trapezoid((bulk_pdf(CERIA, r, sigma) + 4 * math.pi * RHO0 * r) * r * sphere_envelope(r, diameter), r)
        assert model == pytest.approx(cluster, rel=0.06)


def test_termination_broadens_and_small_particles_damp_the_pdf() -> None:
    def first_peak_height(q_max: float) -> float:
        reading = PDFDiffractometer(q_max_inv_angstrom=q_max).measure(ceria(10.0), 1.0, rng=None)
        near = np.abs(reading.r_angstrom - A / math.sqrt(2)) < 0.2
        return float(reading.g_r[near].max())

    assert first_peak_height(10.0) < 0.8 * first_peak_height(25.0)
    small = PDFDiffractometer().measure(ceria(2.0), 1.0, rng=None)
    assert np.abs(small.g_r[small.r_angstrom > 22.0]).max() < 0.1  # termination ripple only
    large = PDFDiffractometer().measure(ceria(20.0), 1.0, rng=None)
    assert np.abs(large.g_r[large.r_angstrom > 22.0]).max() > 1.0


def test_pdf_noise_falls_with_exposure() -> None:
    instrument = PDFDiffractometer()
    clean = instrument.measure(ceria(5.0), 1.0, rng=None).g_r
    short = instrument.measure(ceria(5.0), 1.0, np.random.default_rng(0)).g_r - clean
    long = instrument.measure(ceria(5.0), 100.0, np.random.default_rng(0)).g_r - clean
    assert np.std(long) == pytest.approx(np.std(short) / 10, rel=0.01)
    assert 0 < np.std(short) < 0.5


def test_xanes_references_are_normalised_edges() -> None:
    for references in EDGES.values():
        for reference in references.values():
            e = reference.edge_energy_ev + np.array([-40.0, 150.0, 300.0])
            mu = reference_spectrum(reference, e)
            assert mu[0] < 0.05 and abs(mu[1] - 1.0) < 0.05 and abs(mu[2] - 1.0) < 0.03


def test_edge_moves_up_with_oxidation_state() -> None:
    spectrometer = XasSpectrometer()
    energy = spectrometer.energy_ev("Ce_L3")

    def half_step_energy(ce3: float) -> float:
        mu = spectrometer.expected_absorption("Ce_L3", {"Ce3+": ce3, "Ce4+": 1.0 - ce3})
        return float(energy[np.argmax(mu >= 0.5)])

    edges = [half_step_energy(f) for f in (1.0, 0.7, 0.3, 0.0)]
    assert all(b >= a for a, b in zip(edges, edges[1:], strict=False)) and edges[-1] - edges[0] >= 2.0


@pytest.mark.parametrize(
    ("edge", "fractions"), [("Ce_L3", {"Ce3+": 0.23, "Ce4+": 0.77}), ("Ni_K", {"Ni0": 0.6, "Ni2+": 0.4})]
)
def test_linear_combination_fit_recovers_the_state_fractions(edge: str, fractions: dict[str, float]) -> None:
    spectrum = XasSpectrometer().measure(edge, fractions, 2.0, np.random.default_rng(1))
    basis = np.stack([reference_spectrum(ref, spectrum.energy_ev) for ref in EDGES[edge].values()], axis=1)
    weights, _ = nnls(basis, spectrum.absorption)
    assert weights == pytest.approx([fractions[state] for state in EDGES[edge]], abs=0.01)
    residual = spectrum.absorption - basis @ weights
    assert np.std(residual) == pytest.approx(0.01 / math.sqrt(2.0), rel=0.15)


def test_xanes_inputs_are_checked() -> None:
    spectrometer = XasSpectrometer()
    with pytest.raises(ValueError, match="unknown edge"):
        spectrometer.energy_ev("U_M5")
    with pytest.raises(ValueError, match="unknown state"):
        spectrometer.expected_absorption("Ce_L3", {"Ce2+": 1.0})
    with pytest.raises(ValueError, match="sum to 1"):
        spectrometer.expected_absorption("Ce_L3", {"Ce3+": 0.5, "Ce4+": 0.6})
