"""Typed readings that instruments return: what crosses the wire from a detector to the analysis.

Every array carries its unit in its name. Readings serialise to plain dicts (``as_dict``/``from_dict``)
so they travel inside the instrument protocol's JSON envelope; arrays are stored as lists of floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Diffractogram", "ScatteringCurve", "Spectrum", "PairDistribution", "Reading", "reading_from_dict"]


def _array(values: Any) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {array.shape}")
    return array


@dataclass(frozen=True)
class Diffractogram:
    """A powder X-ray diffraction pattern.

    Attributes:
        two_theta_deg: `n`-dim scattering angles 2θ in degrees, increasing.
        counts: `n`-dim detector counts at each angle (not normalised).
        wavelength_angstrom: wavelength of the primary line (Kα1 for a lab tube) in Å.
        wavelength_ka2_angstrom: wavelength of the Kα2 line in Å, or None for monochromatic radiation.
        ka2_ratio: intensity of Kα2 relative to Kα1 (0.5 for Cu), ignored without Kα2.
        counting_time_s: counting time per step in seconds.
        sample_id: the identity of the measured sample, if known.
        metadata: free-form instrument metadata (JSON-serialisable).
    """

    two_theta_deg: NDArray[np.float64]
    counts: NDArray[np.float64]
    wavelength_angstrom: float
    wavelength_ka2_angstrom: float | None = None
    ka2_ratio: float = 0.5
    counting_time_s: float = 1.0
    sample_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    kind = "diffractogram"

    def __post_init__(self) -> None:
        object.__setattr__(self, "two_theta_deg", _array(self.two_theta_deg))
        object.__setattr__(self, "counts", _array(self.counts))
        if self.two_theta_deg.shape != self.counts.shape:
            raise ValueError(
                f"two_theta_deg has {self.two_theta_deg.size} points but counts has {self.counts.size}"
            )
        bad = int(np.count_nonzero(~np.isfinite(self.counts)) + np.count_nonzero(~np.isfinite(self.two_theta_deg)))
        if bad:
            raise ValueError(f"diffractogram has {bad} non-finite values (a corrupted reading)")
        if self.wavelength_angstrom <= 0:
            raise ValueError(f"wavelength_angstrom must be positive, got {self.wavelength_angstrom}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "two_theta_deg": self.two_theta_deg.tolist(),
            "counts": self.counts.tolist(),
            "wavelength_angstrom": self.wavelength_angstrom,
            "wavelength_ka2_angstrom": self.wavelength_ka2_angstrom,
            "ka2_ratio": self.ka2_ratio,
            "counting_time_s": self.counting_time_s,
            "sample_id": self.sample_id,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Diffractogram:
        fields = {k: v for k, v in data.items() if k != "kind"}
        return cls(**fields)


@dataclass(frozen=True)
class ScatteringCurve:
    """A small-angle scattering curve I(q).

    Attributes:
        q_inv_angstrom: `n`-dim momentum transfer q in 1/Å.
        intensity: `n`-dim scattered intensity (absolute units, 1/cm, where calibrated).
        sigma: `n`-dim one-standard-deviation uncertainty of the intensity.
    """

    q_inv_angstrom: NDArray[np.float64]
    intensity: NDArray[np.float64]
    sigma: NDArray[np.float64]
    sample_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    kind = "scattering_curve"

    def __post_init__(self) -> None:
        for name in ("q_inv_angstrom", "intensity", "sigma"):
            object.__setattr__(self, name, _array(getattr(self, name)))
        if not (self.q_inv_angstrom.shape == self.intensity.shape == self.sigma.shape):
            raise ValueError("q_inv_angstrom, intensity and sigma must have the same length")

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "q_inv_angstrom": self.q_inv_angstrom.tolist(),
            "intensity": self.intensity.tolist(),
            "sigma": self.sigma.tolist(),
            "sample_id": self.sample_id,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScatteringCurve:
        return cls(**{k: v for k, v in data.items() if k != "kind"})


@dataclass(frozen=True)
class PairDistribution:
    """A reduced pair distribution function G(r).

    Attributes:
        r_angstrom: `n`-dim interatomic distance r in Å.
        g_r: `n`-dim reduced PDF G(r) in 1/Å².
        q_max_inv_angstrom: the Qmax at which the Fourier transform was terminated, in 1/Å.
    """

    r_angstrom: NDArray[np.float64]
    g_r: NDArray[np.float64]
    q_max_inv_angstrom: float
    sample_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    kind = "pair_distribution"

    def __post_init__(self) -> None:
        object.__setattr__(self, "r_angstrom", _array(self.r_angstrom))
        object.__setattr__(self, "g_r", _array(self.g_r))
        if self.r_angstrom.shape != self.g_r.shape:
            raise ValueError("r_angstrom and g_r must have the same length")

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "r_angstrom": self.r_angstrom.tolist(),
            "g_r": self.g_r.tolist(),
            "q_max_inv_angstrom": self.q_max_inv_angstrom,
            "sample_id": self.sample_id,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairDistribution:
        return cls(**{k: v for k, v in data.items() if k != "kind"})


@dataclass(frozen=True)
class Spectrum:
    """An X-ray absorption spectrum μ(E), normalised or raw.

    Attributes:
        energy_ev: `n`-dim photon energy in eV.
        absorption: `n`-dim absorption μ(E) (normalised to unit edge step where ``normalised``).
    """

    energy_ev: NDArray[np.float64]
    absorption: NDArray[np.float64]
    normalised: bool = True
    sample_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    kind = "spectrum"

    def __post_init__(self) -> None:
        object.__setattr__(self, "energy_ev", _array(self.energy_ev))
        object.__setattr__(self, "absorption", _array(self.absorption))
        if self.energy_ev.shape != self.absorption.shape:
            raise ValueError("energy_ev and absorption must have the same length")

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "energy_ev": self.energy_ev.tolist(),
            "absorption": self.absorption.tolist(),
            "normalised": self.normalised,
            "sample_id": self.sample_id,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Spectrum:
        return cls(**{k: v for k, v in data.items() if k != "kind"})


Reading = Diffractogram | ScatteringCurve | PairDistribution | Spectrum

_READING_TYPES: dict[str, type] = {
    t.kind: t for t in (Diffractogram, ScatteringCurve, PairDistribution, Spectrum)  # type: ignore[attr-defined]
}


def reading_from_dict(data: dict[str, Any]) -> Reading:
    """Rebuild a reading from its ``as_dict`` form, dispatching on ``data["kind"]``."""
    kind = data.get("kind")
    if kind not in _READING_TYPES:
        raise ValueError(f"unknown reading kind {kind!r}; expected one of {sorted(_READING_TYPES)}")
    return _READING_TYPES[kind].from_dict(data)  # type: ignore[no-any-return]
