"""A simulated small-angle X-ray scattering camera: particle form factors with Schulz polydispersity in, I(q) out.

Conventions follow sasmodels, so that fits with sasmodels recover the truth: scattering-length densities (SLD) in
1e-6/Å², lengths in Å, q in 1/Å, and for a population at volume fraction φ::

    I(q) = φ · 1e-4 · ⟨F²(q)⟩ / ⟨V⟩ + background          (1/cm)

where ⟨·⟩ averages over the size distribution (and orientations for cylinders), F = Δρ V f(q) is the scattering
amplitude in 1e-6 Å (so F²/V · 1e-4 is in 1/cm), and V the particle volume. Size distributions are Schulz with
relative width ``pd`` = σ / mean; averages are computed by Gauss–Legendre quadrature over mean ± 8σ (clipped
above zero), which converges to well below 1e-3 of the exact integral.

Counts: a pinhole camera integrating a 2-D detector azimuthally sees a number of pixels growing with q, so the
expected counts at q are ``I(q) · flux · exposure_s · q / q_max``; observed counts are Poisson, reported back in
1/cm with their one-sigma uncertainty. Instrumental smearing is neglected.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from pymatgen.core import Structure
from scipy.special import gammaln, j1

from instruments.readings import ScatteringCurve

__all__ = [
    "CLASSICAL_ELECTRON_RADIUS_ANGSTROM",
    "CoreShellSphere",
    "Cylinder",
    "ParticleModel",
    "ParticlesInSample",
    "SAXSCamera",
    "Sphere",
    "schulz_quadrature",
    "xray_sld",
]

CLASSICAL_ELECTRON_RADIUS_ANGSTROM = 2.8179403262e-5
_N_SIGMA = 8.0
_N_SIZE = 96
_N_ORIENTATION = 128


def xray_sld(structure: Structure) -> float:
    """X-ray SLD at q = 0 of a crystal, ``r_e · (electrons per cell) / V_cell``, in 1e-6/Å²."""
    electrons = sum(el.Z * occupancy for site in structure for el, occupancy in site.species.items())
    return CLASSICAL_ELECTRON_RADIUS_ANGSTROM * electrons / structure.volume * 1e6


def schulz_quadrature(mean: float, pd: float, n: int = _N_SIZE) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Nodes and weights (summing to 1) of a Schulz distribution with mean ``mean`` and relative width ``pd``.

    The Schulz density is ``p(x) ∝ x^(z−1) exp(−z x / mean)`` with ``z = 1 / pd²``. ``pd = 0`` gives one node.
    """
    if pd <= 0:
        return np.array([float(mean)]), np.array([1.0])
    sigma = pd * mean
    low, high = max(mean - _N_SIGMA * sigma, mean * 1e-3), mean + _N_SIGMA * sigma
    nodes, weights = np.polynomial.legendre.leggauss(n)
    x = 0.5 * (high - low) * nodes + 0.5 * (high + low)
    z = 1.0 / pd**2
    ratio = x / mean
    log_p = z * math.log(z) + (z - 1.0) * np.log(ratio) - ratio * z - math.log(mean) - gammaln(z)
    w = weights * np.exp(log_p)
    return x, w / w.sum()


def _sphere_amplitude(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """``3 (sin x − x cos x) / x³``, with its Taylor series near zero."""
    out = np.empty_like(x)
    small = x < 0.05
    xs = x[small] ** 2
    out[small] = 1.0 - xs / 10.0 + xs**2 / 280.0 - xs**3 / 15120.0
    xl = x[~small]
    out[~small] = 3.0 * (np.sin(xl) - xl * np.cos(xl)) / xl**3
    return out


def _two_j1_over_x(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """``2 J1(x) / x``, equal to 1 at zero."""
    out = np.ones_like(x)
    nonzero = x > 1e-8
    out[nonzero] = 2.0 * j1(x[nonzero]) / x[nonzero]
    return out


def _sinc(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """``sin x / x``, equal to 1 at zero."""
    return np.sinc(x / math.pi)


class ParticleModel(Protocol):
    """A particle population: its name and ``I(q)`` at unit volume fraction without background."""

    model: str

    def intensity_per_cm(self, q_inv_angstrom: NDArray[np.float64]) -> NDArray[np.float64]: ...

    def as_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Sphere:
    """Homogeneous spheres (sasmodels ``sphere``) with Schulz-distributed radius."""

    radius_angstrom: float
    radius_pd: float = 0.0
    sld: float = 1.0
    sld_solvent: float = 6.0
    model = "sphere"

    def intensity_per_cm(self, q_inv_angstrom: NDArray[np.float64]) -> NDArray[np.float64]:
        q = np.asarray(q_inv_angstrom, dtype=np.float64)
        r, w = schulz_quadrature(self.radius_angstrom, self.radius_pd)
        volume = 4.0 / 3.0 * math.pi * r**3
        amplitude = (self.sld - self.sld_solvent) * volume * _sphere_amplitude(np.outer(q, r))
        return 1e-4 * (amplitude**2 @ w) / (volume @ w)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, **asdict(self)}


@dataclass(frozen=True)
class CoreShellSphere:
    """Core–shell spheres (sasmodels ``core_shell_sphere``): Schulz core radius, fixed shell thickness."""

    radius_angstrom: float
    thickness_angstrom: float
    radius_pd: float = 0.0
    sld_core: float = 1.0
    sld_shell: float = 2.0
    sld_solvent: float = 3.0
    model = "core_shell_sphere"

    def intensity_per_cm(self, q_inv_angstrom: NDArray[np.float64]) -> NDArray[np.float64]:
        q = np.asarray(q_inv_angstrom, dtype=np.float64)
        r, w = schulz_quadrature(self.radius_angstrom, self.radius_pd)
        outer = r + self.thickness_angstrom
        v_core, v_total = 4.0 / 3.0 * math.pi * r**3, 4.0 / 3.0 * math.pi * outer**3
        amplitude = (self.sld_core - self.sld_shell) * v_core * _sphere_amplitude(np.outer(q, r)) + (
            self.sld_shell - self.sld_solvent
        ) * v_total * _sphere_amplitude(np.outer(q, outer))
        return 1e-4 * (amplitude**2 @ w) / (v_total @ w)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, **asdict(self)}


@dataclass(frozen=True)
class Cylinder:
    """Randomly oriented right circular cylinders (sasmodels ``cylinder``), Schulz radius and length.

    The orientation average is ``∫₀¹ F²(q, u) du`` over ``u = cos α`` by Gauss–Legendre quadrature.
    """

    radius_angstrom: float
    length_angstrom: float
    radius_pd: float = 0.0
    length_pd: float = 0.0
    sld: float = 4.0
    sld_solvent: float = 1.0
    model = "cylinder"

    def intensity_per_cm(self, q_inv_angstrom: NDArray[np.float64]) -> NDArray[np.float64]:
        q = np.asarray(q_inv_angstrom, dtype=np.float64)
        radii, radius_w = schulz_quadrature(self.radius_angstrom, self.radius_pd)
        lengths, length_w = schulz_quadrature(self.length_angstrom, self.length_pd)
        nodes, weights = np.polynomial.legendre.leggauss(_N_ORIENTATION)
        u, u_w = 0.5 * (nodes + 1.0), 0.5 * weights  # u = cos α on [0, 1]
        sin_a = np.sqrt(1.0 - u**2)
        # F = Δρ · π r² L · 2J1(q r sinα)/(q r sinα) · sin(q L cosα / 2)/(q L cosα / 2); radius and length
        # distributions are independent, so the radial and axial factors are averaged separately.
        area = math.pi * radii**2
        radial = _two_j1_over_x(q[:, None, None] * sin_a[None, :, None] * radii[None, None, :]) ** 2  # (q, u, r)
        radial_mean = radial @ (radius_w * area**2)  # (q, u)
        axial = _sinc(q[:, None, None] * u[None, :, None] * 0.5 * lengths[None, None, :]) ** 2  # (q, u, L)
        axial_mean = axial @ (length_w * lengths**2)  # (q, u)
        total = (self.sld - self.sld_solvent) ** 2 * ((radial_mean * axial_mean) @ u_w)
        norm = float(area @ radius_w) * float(lengths @ length_w)
        return 1e-4 * total / norm

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, **asdict(self)}


@dataclass(frozen=True)
class ParticlesInSample:
    """A particle population dispersed in a sample at ``volume_fraction``."""

    particles: ParticleModel
    volume_fraction: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.volume_fraction <= 1.0:
            raise ValueError(f"volume_fraction must be in [0, 1], got {self.volume_fraction}")


@dataclass(frozen=True)
class SAXSCamera:
    """A pinhole SAXS camera, configured once; ``measure`` is its one verb.

    Attributes:
        q_min_inv_angstrom, q_max_inv_angstrom, n_points: the log-spaced q grid in 1/Å.
        background_per_cm: flat background (solvent, capillary, incoherent) in 1/cm.
        flux: counts per second per (1/cm) at ``q_max`` (pixel count grows ∝ q).
        name: instrument name reported in readings' metadata.
    """

    q_min_inv_angstrom: float = 0.005
    q_max_inv_angstrom: float = 0.5
    n_points: int = 200
    background_per_cm: float = 0.05
    flux: float = 2000.0
    name: str = "sim-saxs"

    def __post_init__(self) -> None:
        if not 0 < self.q_min_inv_angstrom < self.q_max_inv_angstrom:
            raise ValueError("need 0 < q_min_inv_angstrom < q_max_inv_angstrom")
        if self.n_points < 2 or self.flux <= 0 or self.background_per_cm < 0:
            raise ValueError("need n_points >= 2, flux > 0 and background_per_cm >= 0")

    @property
    def q_inv_angstrom(self) -> NDArray[np.float64]:
        """The `n`-dim q grid in 1/Å (log-spaced)."""
        return np.geomspace(self.q_min_inv_angstrom, self.q_max_inv_angstrom, self.n_points)

    def expected_intensity(self, sample: list[ParticlesInSample]) -> NDArray[np.float64]:
        """Noise-free I(q) in 1/cm, `n`-dim: the populations plus the flat background."""
        q = self.q_inv_angstrom
        intensity = np.full_like(q, self.background_per_cm)
        for population in sample:
            intensity += population.volume_fraction * population.particles.intensity_per_cm(q)
        return intensity

    def measure(
        self, sample: list[ParticlesInSample], exposure_s: float, rng: np.random.Generator, sample_id: str | None = None
    ) -> ScatteringCurve:
        """Expose ``sample`` for ``exposure_s`` seconds; Poisson counts converted back to 1/cm with sigma."""
        if exposure_s <= 0:
            raise ValueError(f"exposure_s must be positive, got {exposure_s}")
        q = self.q_inv_angstrom
        per_unit = self.flux * exposure_s * q / self.q_max_inv_angstrom  # counts per (1/cm)
        counts = rng.poisson(self.expected_intensity(sample) * per_unit).astype(np.float64)
        return ScatteringCurve(
            q_inv_angstrom=q,
            intensity=counts / per_unit,
            sigma=np.sqrt(np.maximum(counts, 1.0)) / per_unit,
            sample_id=sample_id,
            metadata={"instrument": self.name, "exposure_s": exposure_s, "background_per_cm": self.background_per_cm},
        )
