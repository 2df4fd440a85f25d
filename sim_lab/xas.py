"""A simulated XANES measurement: normalised edge spectra as linear combinations of oxidation-state references.

Each reference is an arctangent edge step (height 1 at ``edge_energy_ev``, width ``step_width_ev``) plus
Lorentzian white-line / pre-edge peaks ``(offset_ev, height, fwhm_ev)``, a shape that tracks the oxidation state
as real spectra do: higher states put the edge and the white line at higher energy. A sample with state fractions
``f_s`` gives ``μ(E) = Σ_s f_s μ_s(E + energy_shift_ev)``; Gaussian noise of sd ``noise / sqrt(exposure_s)`` is
added. The reference energies are close to the published ones (Ce L3 ≈ 5723 eV, Ni K ≈ 8333 eV) but the shapes are
models, not measured standards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from instruments.readings import Spectrum

__all__ = ["EDGES", "XanesReference", "XasSpectrometer", "reference_spectrum"]


@dataclass(frozen=True)
class XanesReference:
    """Model XANES of one absorber in one oxidation state.

    Attributes:
        edge: edge name, e.g. ``"Ce_L3"``.
        state: oxidation-state label, e.g. ``"Ce3+"``.
        edge_energy_ev: inflection point of the edge step, eV.
        step_width_ev: width of the arctangent edge step, eV.
        peaks: ``(offset_ev, height, fwhm_ev)`` Lorentzians relative to ``edge_energy_ev``.
    """

    edge: str
    state: str
    edge_energy_ev: float
    step_width_ev: float
    peaks: tuple[tuple[float, float, float], ...]


EDGES: dict[str, dict[str, XanesReference]] = {
    "Ce_L3": {
        "Ce3+": XanesReference("Ce_L3", "Ce3+", 5724.0, 1.5, ((2.5, 2.6, 4.0),)),
        "Ce4+": XanesReference("Ce_L3", "Ce4+", 5727.5, 1.5, ((3.0, 1.3, 4.5), (10.5, 1.5, 5.0))),
    },
    "Ni_K": {
        "Ni0": XanesReference("Ni_K", "Ni0", 8333.0, 2.0, ((0.0, 0.12, 3.0), (17.0, 0.25, 8.0))),
        "Ni2+": XanesReference("Ni_K", "Ni2+", 8341.0, 1.5, ((-8.0, 0.04, 2.0), (9.0, 1.0, 4.0))),
    },
}


def reference_spectrum(reference: XanesReference, energy_ev: NDArray[np.float64]) -> NDArray[np.float64]:
    """Normalised μ(E) of ``reference`` on ``energy_ev`` (0 well below the edge, → 1 well above)."""
    e = np.asarray(energy_ev, dtype=np.float64) - reference.edge_energy_ev
    mu = 0.5 + np.arctan(e / reference.step_width_ev) / math.pi
    for offset, height, fwhm in reference.peaks:
        mu = mu + height / (1.0 + (2.0 * (e - offset) / fwhm) ** 2)
    return mu


@dataclass(frozen=True)
class XasSpectrometer:
    """A fluorescence/transmission XANES setup, configured once.

    Attributes:
        pre_edge_ev, post_edge_ev: the scan spans the edge from ``−pre_edge_ev`` to ``+post_edge_ev``, eV.
        step_ev: energy step, eV.
        noise: sd of the normalised absorption for a 1 s exposure per point.
        energy_shift_ev: monochromator calibration error added to every reference energy, eV.
        name: instrument name reported in readings' metadata.
    """

    pre_edge_ev: float = 30.0
    post_edge_ev: float = 70.0
    step_ev: float = 0.25
    noise: float = 0.01
    energy_shift_ev: float = 0.0
    name: str = "sim-xas"

    def energy_ev(self, edge: str) -> NDArray[np.float64]:
        """The `n`-dim energy grid of a scan over ``edge``, eV."""
        e0 = min(ref.edge_energy_ev for ref in _edge(edge).values())
        n = int(round((self.pre_edge_ev + self.post_edge_ev) / self.step_ev)) + 1
        return e0 - self.pre_edge_ev + self.step_ev * np.arange(n, dtype=np.float64)

    def expected_absorption(self, edge: str, fractions: Mapping[str, float]) -> NDArray[np.float64]:
        """Noise-free normalised μ(E), `n`-dim, for oxidation-state ``fractions`` (summing to 1)."""
        references = _edge(edge)
        unknown = sorted(set(fractions) - set(references))
        if unknown:
            raise ValueError(f"{edge}: unknown state(s) {unknown}; references: {sorted(references)}")
        total = sum(fractions.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6) or any(f < 0 for f in fractions.values()):
            raise ValueError(f"{edge}: state fractions must be non-negative and sum to 1, got {dict(fractions)}")
        energy = self.energy_ev(edge) - self.energy_shift_ev
        mu = np.zeros_like(energy)
        for state, fraction in fractions.items():
            mu += fraction * reference_spectrum(references[state], energy)
        return mu

    def measure(
        self,
        edge: str,
        fractions: Mapping[str, float],
        exposure_s: float,
        rng: np.random.Generator,
        sample_id: str | None = None,
    ) -> Spectrum:
        """Scan ``edge`` for ``exposure_s`` seconds per point."""
        if exposure_s <= 0:
            raise ValueError(f"exposure_s must be positive, got {exposure_s}")
        mu = self.expected_absorption(edge, fractions)
        mu = mu + rng.normal(0.0, self.noise / math.sqrt(exposure_s), mu.size)
        return Spectrum(
            energy_ev=self.energy_ev(edge),
            absorption=mu,
            normalised=True,
            sample_id=sample_id,
            metadata={"instrument": self.name, "edge": edge, "exposure_s": exposure_s},
        )


def _edge(edge: str) -> dict[str, XanesReference]:
    try:
        return EDGES[edge]
    except KeyError:
        raise ValueError(f"unknown edge {edge!r}; known edges: {sorted(EDGES)}") from None
