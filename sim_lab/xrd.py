"""A simulated laboratory powder diffractometer: pymatgen structures in, a noisy :class:`Diffractogram` out.

The forward model, stated once so that analysis code can match it exactly
-------------------------------------------------------------------------
For a sample of phases ``p`` (each a :class:`PhaseInSample`), the expected counts at grid angle ``2θ_i`` are::

    E_i = flux · counting_time_s · (Σ_p S_p Σ_{hkl,line} I_hkl · r_line · Ω(2θ_i − 2θ_hkl,line − z) + B(2θ_i))
    observed_i ~ Poisson(E_i)

1. **Grid.** ``2θ_i = two_theta_min_deg + i · step_deg`` for ``i = 0 .. n−1``,
   ``n = round((two_theta_max_deg − two_theta_min_deg) / step_deg) + 1``.
2. **Reflections.** ``XRDCalculator(wavelength=λ1).get_pattern(structure, scaled=False,
   two_theta_range=(max(2θ_min − 5°, 0.5°), min(2θ_max + 5°, 179.5°)))``: Bragg angles ``2θ_hkl``, interplanar
   spacings ``d_hkl`` and intensities ``I_hkl`` per unit cell (|F|², multiplicity and Lorentz-polarisation
   included, no Debye-Waller factor). Reflections just outside the scan are kept so their tails enter it.
3. **Lines.** Kα1 has ``r = 1`` at ``2θ_hkl``. With a Kα2 wavelength ``λ2`` each reflection is repeated at
   ``2 asin(λ2 / (2 d_hkl))`` with ``r = ka2_ratio`` (same ``I_hkl``; the small change of the
   Lorentz-polarisation factor between the lines is neglected). Lines with ``λ2 / (2 d) ≥ 1`` are dropped.
4. **Zero shift.** ``z = zero_shift_deg`` is added to every line position; widths use the unshifted angle.
5. **Phase scale (Hill–Howard).** ``S_p = w_p / (m_p · V_p)`` with ``w_p`` the weight fraction, ``m_p`` the
   mass of the unit cell in amu (``structure.composition.weight``) and ``V_p`` its volume in Å³. Weight
   fractions are therefore recovered from refined scales as ``w_p = S_p m_p V_p / Σ_q S_q m_q V_q``.
6. **Profile.** ``Ω`` is a pseudo-Voigt normalised to unit area over 2θ in degrees, with the
   Thompson–Cox–Hastings (TCH) combination of a Gaussian and a Lorentzian width, both in degrees 2θ, at the
   Bragg angle θ of the line::

       Γ_G = sqrt(U tan²θ + V tanθ + W)                               (Caglioti, instrument)
       Γ_L = (180/π) · (K λ / (D cosθ) + 4 ε tanθ), K = 1.107        (sphere diameter D + microstrain)
       Γ   = (Γ_G⁵ + 2.69269 Γ_G⁴Γ_L + 2.42843 Γ_G³Γ_L² + 4.47163 Γ_G²Γ_L³ + 0.07842 Γ_GΓ_L⁴ + Γ_L⁵)^(1/5)
       q   = Γ_L / Γ,   η = 1.36603 q − 0.47719 q² + 0.11116 q³
       Ω(Δ) = η · (2 / (π Γ)) / (1 + 4 Δ²/Γ²)
            + (1 − η) · (2 / Γ) · sqrt(ln 2 / π) · exp(−4 ln 2 · Δ²/Γ²)

   with ``λ`` the wavelength of the line (λ1 or λ2) in Å, ``D = 10 · crystallite_size_nm`` in Å and ``ε`` the
   (dimensionless) microstrain. Profiles are evaluated at the grid points, untruncated.
7. **Background.** ``B(2θ) = Σ_k c_k T_k(t)``, Chebyshev polynomials of the first kind in
   ``t = 2 (2θ − 2θ_min) / (2θ_max − 2θ_min) − 1`` with coefficients ``background_chebyshev``.

8. **What a real benchtop instrument adds** (each off by default, so the scenarios keep the model above; on with
   :meth:`PowderDiffractometer.like_real`): the split pseudo-Voigt of axial divergence (low-angle half ``1 + a``
   wider, ``a = asymmetry / tan 2θ``), a Kβ line leaking through the filter (``kbeta_ratio``), each element's
   anomalous dispersion (f', f'' from ``xraydb``) in ``I_hkl``, March-Dollase preferred orientation per phase
   (``PhaseInSample.preferred_orientation_hkl``, ``march_dollase_r``, averaged over the reflection's symmetry
   equivalents), Brindley microabsorption for grains of ``grain_size_um`` (phases absorbing more than the mixture
   look weaker), an explicit background in counts per second (``background_counts_per_s``: air scatter,
   fluorescence) instead of the Chebyshev one, and particle statistics (``particle_statistics``: each
   reflection's intensity scattered lognormally, as a finite number of grains in diffracting position makes it).

With the default flux a 1 s/step scan of pure 20 nm anatase peaks at ~10⁴ counts over a ~200-count background.
Reference: R. A. Young (ed.), *The Rietveld Method* (1993), ch. 1 and 7; Thompson, Cox & Hastings,
J. Appl. Cryst. 20, 79 (1987); Hill & Howard, J. Appl. Cryst. 20, 467 (1987).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Structure

from instruments.readings import Diffractogram

__all__ = [
    "CU_KA1_ANGSTROM",
    "CU_KA2_ANGSTROM",
    "SPHERE_FWHM_K",
    "PhaseInSample",
    "PowderDiffractometer",
    "Reflections",
    "caglioti_fwhm_deg",
    "lorentzian_fwhm_deg",
    "phase_scale",
    "pseudo_voigt",
    "reflections",
    "tch_fwhm_and_eta",
]

CU_KA1_ANGSTROM = 1.54056
CU_KA2_ANGSTROM = 1.54439
SPHERE_FWHM_K = 1.107
"""FWHM Scherrer constant for spheres of diameter D (the analysis and the SAXS/PDF simulators use D too)."""
_REFLECTION_MARGIN_DEG = 5.0
_LN2 = math.log(2.0)


@dataclass(frozen=True)
class PhaseInSample:
    """One crystalline phase as it sits in a sample.

    Attributes:
        name: phase name, e.g. ``"anatase"`` (also part of the reflection-cache key).
        structure: the phase's crystal structure (lattice in Å).
        weight_fraction: mass fraction of the phase in the sample, in [0, 1].
        crystallite_size_nm: sphere diameter D of the coherent domains in nm (FWHM Scherrer constant K = 1.107).
        microstrain: dimensionless microstrain ε (Δd/d), broadening 4 ε tanθ.
    """

    name: str
    structure: Structure = field(compare=False)
    weight_fraction: float
    crystallite_size_nm: float
    microstrain: float = 0.0
    preferred_orientation_hkl: tuple[int, int, int] | None = None
    march_dollase_r: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight_fraction <= 1.0:
            raise ValueError(f"{self.name}: weight_fraction must be in [0, 1], got {self.weight_fraction}")
        if self.crystallite_size_nm <= 0.0:
            raise ValueError(f"{self.name}: crystallite_size_nm must be positive, got {self.crystallite_size_nm}")
        if self.microstrain < 0.0:
            raise ValueError(f"{self.name}: microstrain must be non-negative, got {self.microstrain}")
        if self.march_dollase_r <= 0.0:
            raise ValueError(f"{self.name}: march_dollase_r must be positive, got {self.march_dollase_r}")


@dataclass(frozen=True)
class Reflections:
    """Reflections of one structure at one wavelength.

    Attributes:
        two_theta_deg: `m`-dim Bragg angles 2θ in degrees.
        d_angstrom: `m`-dim interplanar spacings in Å.
        intensity: `m`-dim intensities per unit cell (pymatgen, unscaled: |F|² · multiplicity · LP).
        hkl: `m` Miller indices (the first of each family pymatgen lists).
    """

    two_theta_deg: NDArray[np.float64]
    d_angstrom: NDArray[np.float64]
    intensity: NDArray[np.float64]
    hkl: tuple[tuple[int, ...], ...]


def phase_scale(phase: PhaseInSample) -> float:
    """Hill–Howard scale ``S = w / (m_cell · V_cell)`` with the cell mass in amu and volume in Å³."""
    structure = phase.structure
    return phase.weight_fraction / (float(structure.composition.weight) * structure.volume)


def caglioti_fwhm_deg(two_theta_deg: NDArray[np.float64], u: float, v: float, w: float) -> NDArray[np.float64]:
    """Instrumental Gaussian FWHM ``sqrt(U tan²θ + V tanθ + W)`` in degrees 2θ (U, V, W in deg²)."""
    tan_theta = np.tan(np.radians(two_theta_deg) / 2.0)
    return np.sqrt(u * tan_theta**2 + v * tan_theta + w)


def lorentzian_fwhm_deg(
    two_theta_deg: NDArray[np.float64],
    wavelength_angstrom: float | NDArray[np.float64],
    crystallite_size_nm: float,
    microstrain: float,
) -> NDArray[np.float64]:
    """Sample Lorentzian FWHM ``(180/π)(K λ / (D cosθ) + 4 ε tanθ)`` in degrees 2θ, D = 10 · size in Å."""
    theta = np.radians(two_theta_deg) / 2.0
    size_angstrom = 10.0 * crystallite_size_nm
    size_term = SPHERE_FWHM_K * wavelength_angstrom / (size_angstrom * np.cos(theta))
    return np.degrees(size_term + 4.0 * microstrain * np.tan(theta))


def tch_fwhm_and_eta(
    gaussian_fwhm: NDArray[np.float64], lorentzian_fwhm: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Thompson–Cox–Hastings total FWHM Γ (same unit as the inputs) and Lorentzian mixing η in [0, 1]."""
    g, lo = gaussian_fwhm, lorentzian_fwhm
    total = (
        g**5 + 2.69269 * g**4 * lo + 2.42843 * g**3 * lo**2 + 4.47163 * g**2 * lo**3 + 0.07842 * g * lo**4 + lo**5
    ) ** 0.2
    q = lo / total
    eta = 1.36603 * q - 0.47719 * q**2 + 0.11116 * q**3
    return total, eta


def pseudo_voigt(
    delta_deg: NDArray[np.float64], fwhm_deg: NDArray[np.float64], eta: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Unit-area pseudo-Voigt ``η L + (1 − η) G`` at offsets ``delta_deg`` (broadcasts; all in degrees 2θ)."""
    x2 = (delta_deg / fwhm_deg) ** 2
    lorentz = (2.0 / (math.pi * fwhm_deg)) / (1.0 + 4.0 * x2)
    gauss = (2.0 / fwhm_deg) * math.sqrt(_LN2 / math.pi) * np.exp(-4.0 * _LN2 * x2)
    return eta * lorentz + (1.0 - eta) * gauss


def _anomalous_ratio(structure: Structure, refl: Reflections, wavelength_angstrom: float) -> NDArray[np.float64]:
    """|F|² with each element's f' + i f'' over |F|² without, per reflection (form factors as pymatgen's)."""
    from analysis.powder_model import StructureFactors  # the same structure-factor sums; f', f'' from xraydb

    hkl = np.array([_three_index(h) for h in refl.hkl], dtype=float)
    factors = StructureFactors.of(structure, hkl, refl.d_angstrom, wavelength_angstrom)
    return factors.ratio(refl.d_angstrom, wavelength_angstrom, anomalous=True)


def _three_index(hkl: tuple[int, ...]) -> tuple[int, ...]:
    """Miller indices (h, k, l) of a pymatgen family label, which is (h, k, i, l) for hexagonal cells."""
    return hkl if len(hkl) == 3 else (hkl[0], hkl[1], hkl[3])


def _march_dollase(phase: PhaseInSample, refl: Reflections) -> NDArray[np.float64]:
    """March-Dollase factor ``(r² cos²α + sin²α / r)^(−3/2)`` averaged over each reflection's equivalents."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    structure = phase.structure
    reciprocal = structure.lattice.reciprocal_lattice_crystallographic.matrix
    operations = SpacegroupAnalyzer(structure, symprec=0.01).get_point_group_operations(cartesian=False)
    axis = np.array(phase.preferred_orientation_hkl, dtype=float) @ reciprocal
    axis /= np.linalg.norm(axis)
    r = phase.march_dollase_r
    out = []
    for h in refl.hkl:
        hkl = np.array(_three_index(h), dtype=float)
        equivalents = np.unique(np.round([op.rotation_matrix.T @ hkl for op in operations], 6), axis=0)
        normals = equivalents @ reciprocal
        cos2 = (normals @ axis / np.linalg.norm(normals, axis=1)) ** 2
        out.append(float(np.mean((r**2 * cos2 + (1.0 - cos2) / r) ** -1.5)))
    return np.array(out)


def _brindley(
    sample: Sequence[PhaseInSample], wavelength_angstrom: float, grain_size_um: float | None
) -> NDArray[np.float64]:
    """Brindley's τ per phase for grains of this diameter (ones without a grain size)."""
    if grain_size_um is None or len(sample) < 2:
        return np.ones(len(sample))
    from analysis.absorption import brindley_tau, linear_attenuation_per_um

    mu = np.array([linear_attenuation_per_um(p.structure, wavelength_angstrom) for p in sample])
    volume = np.array([p.weight_fraction / float(p.structure.density) for p in sample])
    mean_mu = float(np.sum(volume * mu) / np.sum(volume))
    return np.array([brindley_tau(m - mean_mu, grain_size_um / 2.0) for m in mu])


_CACHE_SIZE = 2048
_cache: OrderedDict[tuple[object, ...], Reflections] = OrderedDict()
_cache_lock = threading.Lock()


def _structure_key(structure: Structure) -> tuple[object, ...]:
    lattice = tuple(round(float(p), 6) for p in (*structure.lattice.abc, *structure.lattice.angles))
    sites = tuple((site.species_string, *(round(float(f), 6) for f in site.frac_coords)) for site in structure)
    return lattice + sites


def reflections(
    name: str, structure: Structure, wavelength_angstrom: float, two_theta_range_deg: tuple[float, float]
) -> Reflections:
    """Reflections of ``structure`` from pymatgen's ``XRDCalculator``, cached per phase, cell and wavelength.

    The cache key holds the name, the lattice parameters and fractional coordinates rounded to 1e-6 (Å,
    degrees, fractions), the wavelength and the range, so a cached answer is the answer for that exact cell.
    """
    key = (name, _structure_key(structure), float(wavelength_angstrom), tuple(two_theta_range_deg))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
    pattern = XRDCalculator(wavelength=wavelength_angstrom).get_pattern(
        structure, scaled=False, two_theta_range=two_theta_range_deg
    )
    arrays = [np.array(values, dtype=np.float64) for values in (pattern.x, pattern.d_hkls, pattern.y)]
    for array in arrays:
        array.setflags(write=False)
    hkl = tuple(tuple(int(i) for i in family[0]["hkl"]) for family in pattern.hkls)
    result = Reflections(two_theta_deg=arrays[0], d_angstrom=arrays[1], intensity=arrays[2], hkl=hkl)
    with _cache_lock:
        _cache[key] = result
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return result


@dataclass(frozen=True)
class PowderDiffractometer:
    """A Bragg–Brentano lab diffractometer, configured once; ``measure`` is its one verb.

    Attributes:
        wavelength_angstrom: Kα1 (primary) wavelength in Å.
        wavelength_ka2_angstrom: Kα2 wavelength in Å, or None for monochromatic radiation.
        ka2_ratio: Kα2 / Kα1 intensity ratio.
        two_theta_min_deg, two_theta_max_deg, step_deg: the scan grid in degrees 2θ.
        caglioti_u_deg2, caglioti_v_deg2, caglioti_w_deg2: instrumental Gaussian width parameters in deg².
        zero_shift_deg: added to every peak position, in degrees 2θ.
        background_chebyshev: Chebyshev coefficients of the background (in the same units as the phase term).
        flux: incident-flux scale converting the model to counts per second of counting time.
        name: instrument name reported in readings' metadata.
    """

    wavelength_angstrom: float = CU_KA1_ANGSTROM
    wavelength_ka2_angstrom: float | None = CU_KA2_ANGSTROM
    ka2_ratio: float = 0.5
    two_theta_min_deg: float = 10.0
    two_theta_max_deg: float = 80.0
    step_deg: float = 0.02
    caglioti_u_deg2: float = 0.004
    caglioti_v_deg2: float = -0.002
    caglioti_w_deg2: float = 0.002
    zero_shift_deg: float = 0.0
    background_chebyshev: tuple[float, ...] = (1.5, -0.5, 0.25)
    flux: float = 150.0
    name: str = "sim-xrd"
    asymmetry: float = 0.0
    kbeta_angstrom: float | None = None
    kbeta_ratio: float = 0.0
    anomalous: bool = False
    grain_size_um: float | None = None
    background_counts_per_s: tuple[float, ...] | None = None
    particle_statistics: float = 0.0
    particle_seed: int = 0

    def __post_init__(self) -> None:
        if self.wavelength_angstrom <= 0:
            raise ValueError(f"wavelength_angstrom must be positive, got {self.wavelength_angstrom}")
        if not 0.0 < self.two_theta_min_deg < self.two_theta_max_deg < 180.0:
            raise ValueError(
                f"need 0 < two_theta_min_deg < two_theta_max_deg < 180, got "
                f"{self.two_theta_min_deg}, {self.two_theta_max_deg}"
            )
        if self.step_deg <= 0:
            raise ValueError(f"step_deg must be positive, got {self.step_deg}")
        if self.ka2_ratio < 0:
            raise ValueError(f"ka2_ratio must be non-negative, got {self.ka2_ratio}")
        if self.flux <= 0:
            raise ValueError(f"flux must be positive, got {self.flux}")
        fine = np.linspace(self.two_theta_min_deg, self.two_theta_max_deg, 1001)
        tan_theta = np.tan(np.radians(fine) / 2.0)
        variance = self.caglioti_u_deg2 * tan_theta**2 + self.caglioti_v_deg2 * tan_theta + self.caglioti_w_deg2
        if np.any(variance <= 0):
            raise ValueError("Caglioti U tan²θ + V tanθ + W must be positive over the scan range")
        object.__setattr__(self, "background_chebyshev", tuple(float(c) for c in self.background_chebyshev))

    @property
    def two_theta_deg(self) -> NDArray[np.float64]:
        """The `n`-dim scan grid in degrees 2θ."""
        n = int(round((self.two_theta_max_deg - self.two_theta_min_deg) / self.step_deg)) + 1
        return self.two_theta_min_deg + self.step_deg * np.arange(n, dtype=np.float64)

    @property
    def reflection_range_deg(self) -> tuple[float, float]:
        """The 2θ range (degrees, Kα1) within which reflections are computed: the scan ± 5°."""
        return (
            max(self.two_theta_min_deg - _REFLECTION_MARGIN_DEG, 0.5),
            min(self.two_theta_max_deg + _REFLECTION_MARGIN_DEG, 179.5),
        )

    def reflections(self, phase: PhaseInSample) -> Reflections:
        """The Kα1 reflections of ``phase`` (cached)."""
        return reflections(phase.name, phase.structure, self.wavelength_angstrom, self.reflection_range_deg)

    def background(self, two_theta_deg: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
        """The Chebyshev background (model units, before flux and time) on ``two_theta_deg`` (or the grid)."""
        x = self.two_theta_deg if two_theta_deg is None else np.asarray(two_theta_deg, dtype=np.float64)
        if self.background_counts_per_s is not None:
            grid = self.two_theta_deg
            return np.interp(x, grid, np.asarray(self.background_counts_per_s)) / self.flux
        t = 2.0 * (x - self.two_theta_min_deg) / (self.two_theta_max_deg - self.two_theta_min_deg) - 1.0
        return np.polynomial.chebyshev.chebval(t, self.background_chebyshev)

    def phase_signal(
        self, phase: PhaseInSample, two_theta_deg: NDArray[np.float64] | None = None
    ) -> NDArray[np.float64]:
        """One phase's diffracted signal ``S_p Σ I r Ω`` (model units, before flux and time), `n`-dim."""
        x = self.two_theta_deg if two_theta_deg is None else np.asarray(two_theta_deg, dtype=np.float64)
        refl = self.reflections(phase)
        intensity = refl.intensity * self._intensity_factors(phase, refl)
        centres = [refl.two_theta_deg]
        wavelengths = [np.full(refl.two_theta_deg.size, self.wavelength_angstrom)]
        areas = [intensity]
        extra_lines = [(self.wavelength_ka2_angstrom, self.ka2_ratio), (self.kbeta_angstrom, self.kbeta_ratio)]
        for line, ratio in extra_lines:
            if line is None or ratio <= 0:
                continue
            sin_theta = line / (2.0 * refl.d_angstrom)
            ok = sin_theta < 1.0
            centres.append(np.degrees(2.0 * np.arcsin(sin_theta[ok])))
            wavelengths.append(np.full(int(ok.sum()), line))
            areas.append(ratio * intensity[ok])
        centre = np.concatenate(centres)
        wavelength = np.concatenate(wavelengths)
        area = np.concatenate(areas) * phase_scale(phase)
        gaussian = caglioti_fwhm_deg(centre, self.caglioti_u_deg2, self.caglioti_v_deg2, self.caglioti_w_deg2)
        lorentzian = lorentzian_fwhm_deg(centre, wavelength, phase.crystallite_size_nm, phase.microstrain)
        fwhm, eta = tch_fwhm_and_eta(gaussian, lorentzian)
        delta = x[None, :] - (centre + self.zero_shift_deg)[:, None]
        if self.asymmetry:
            a = np.clip(self.asymmetry / np.tan(np.radians(centre)), -0.6, 0.6)[:, None]
            wide = pseudo_voigt(delta, fwhm[:, None] * (1.0 + a), eta[:, None]) * (1.0 + a)
            narrow = pseudo_voigt(delta, fwhm[:, None] * (1.0 - a), eta[:, None]) * (1.0 - a)
            profiles = np.where(delta < 0.0, wide, narrow)
        else:
            profiles = pseudo_voigt(delta, fwhm[:, None], eta[:, None])
        return area @ profiles

    def _intensity_factors(self, phase: PhaseInSample, refl: Reflections) -> NDArray[np.float64]:
        """Per reflection: anomalous dispersion and preferred orientation (1 where either is off)."""
        factors = np.ones(refl.intensity.size)
        if self.anomalous:
            factors = factors * _anomalous_ratio(phase.structure, refl, self.wavelength_angstrom)
        if phase.preferred_orientation_hkl is not None and phase.march_dollase_r != 1.0:
            factors = factors * _march_dollase(phase, refl)
        if self.particle_statistics > 0:  # a finite number of grains in diffracting position: lognormal per line
            seed = [self.particle_seed, *phase.name.encode("utf-8")]
            scatter = np.random.default_rng(seed).lognormal(0.0, self.particle_statistics, refl.intensity.size)
            factors = factors * scatter / np.mean(scatter)
        return factors

    def expected_counts(self, sample: Sequence[PhaseInSample], counting_time_s: float) -> NDArray[np.float64]:
        """Noise-free expected counts per step, `n`-dim, for ``counting_time_s`` seconds per step."""
        if counting_time_s <= 0:
            raise ValueError(f"counting_time_s must be positive, got {counting_time_s}")
        x = self.two_theta_deg
        signal = self.background(x)
        present = [phase for phase in sample if phase.weight_fraction > 0]
        tau = _brindley(present, self.wavelength_angstrom, self.grain_size_um)
        for phase, factor in zip(present, tau, strict=True):
            signal = signal + factor * self.phase_signal(phase, x)
        return self.flux * counting_time_s * signal

    def measure(
        self,
        sample: Sequence[PhaseInSample],
        counting_time_s: float,
        rng: np.random.Generator,
        sample_id: str | None = None,
    ) -> Diffractogram:
        """Scan ``sample`` for ``counting_time_s`` seconds per step; counts are Poisson draws from ``rng``."""
        expected = self.expected_counts(sample, counting_time_s)
        counts = rng.poisson(np.clip(expected, 0.0, None)).astype(np.float64)
        return Diffractogram(
            two_theta_deg=self.two_theta_deg,
            counts=counts,
            wavelength_angstrom=self.wavelength_angstrom,
            wavelength_ka2_angstrom=self.wavelength_ka2_angstrom,
            ka2_ratio=self.ka2_ratio,
            counting_time_s=counting_time_s,
            sample_id=sample_id,
            metadata={"instrument": self.name, "calibration": self.calibration()},
        )

    def calibration(self) -> dict[str, float]:
        """What a lab knows about its instrument from a standard (LaB6/Si): widths and zero shift."""
        return {
            "caglioti_u_deg2": self.caglioti_u_deg2,
            "caglioti_v_deg2": self.caglioti_v_deg2,
            "caglioti_w_deg2": self.caglioti_w_deg2,
            "zero_shift_deg": self.zero_shift_deg,
            "step_deg": self.step_deg,
        }
