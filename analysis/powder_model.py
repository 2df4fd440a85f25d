"""The analysis's forward model of a powder pattern: reflections of reference phases and their peak profiles.

Reflection lists come from pymatgen's ``XRDCalculator`` once per reference phase (intensities per unit cell,
including Lorentz-polarisation and multiplicity, ``scaled=False``). Peak positions are then recomputed from the
refined lattice parameters through the reciprocal metric, so a lattice refinement never calls pymatgen again.
Intensities follow the refined lattice too: each is rescaled by the change of ``|F(s)|² · LP(θ)`` at its new
``s = 1 / 2d`` (atomic form factors as pymatgen's, fractional coordinates fixed). A cell 0.7 % larger moves
anatase's intensities by up to 2.6 %, which a fit with fixed intensities turns into a weight-fraction error
several times its reported uncertainty.

Intensities carry, as options of :func:`phase_pattern`, the anomalous dispersion of each element at each line's
wavelength (f', f'' from the Chantler tables of ``xraydb``: nickel's intensities under Cu Kα fall to about 0.7x
the plain value) and an isotropic displacement factor ``exp(−2 B s²)`` per phase.

Profiles (:mod:`analysis.peak_profiles`) are split TCH pseudo-Voigt functions: a Gaussian instrumental width
(Caglioti: Γ_G² = U tan²θ + V tanθ + W, in deg²), a Lorentzian sample width from crystallite size and
microstrain (4 ε tanθ), and an axial-divergence asymmetry ``a = A / tan 2θ``. Sizes are sphere diameters: for a
sphere of diameter D the size-broadened FWHM is ``K λ / (D cos θ)`` with ``K = SPHERE_FWHM_K = 1.107`` (the
FWHM of the sphere's column-length profile), so XRD, SAXS and PDF report the same diameter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure

from analysis.peak_profiles import pseudo_voigt_tch, render

__all__ = [
    "SPHERE_FWHM_K",
    "CU_KBETA_ANGSTROM",
    "anomalous_scattering",
    "ReferencePhase",
    "StructureFactors",
    "Radiation",
    "load_reference_phase",
    "pseudo_voigt_tch",
    "phase_pattern",
    "free_lattice_parameters",
]

SPHERE_FWHM_K = 1.107
"""Scherrer constant for the FWHM of a sphere's size broadening, with D its diameter (sim_lab uses the same)."""
CU_KBETA_ANGSTROM = 1.392218
PHASE_LIBRARY = Path(__file__).parent / "phase_library"


@dataclass(frozen=True)
class Radiation:
    """X-ray radiation: the primary wavelength, an optional Kα2 line and an optional Kβ line, in Å.

    ``kbeta_ratio`` is the Kβ intensity relative to Kα1 that reaches the detector: about 0.005-0.01 through a Ni
    filter on a Cu tube, about 0.2 without a filter, 0 with a monochromator.
    """

    wavelength_angstrom: float
    wavelength_ka2_angstrom: float | None = None
    ka2_ratio: float = 0.5
    wavelength_kbeta_angstrom: float | None = None
    kbeta_ratio: float = 0.0

    def lines(self) -> list[tuple[float, float]]:
        """``(wavelength_angstrom, relative_intensity)`` of each line."""
        lines = [(self.wavelength_angstrom, 1.0)]
        if self.wavelength_ka2_angstrom is not None:
            lines.append((self.wavelength_ka2_angstrom, self.ka2_ratio))
        if self.wavelength_kbeta_angstrom is not None and self.kbeta_ratio > 0.0:
            lines.append((self.wavelength_kbeta_angstrom, self.kbeta_ratio))
        return lines


@dataclass(frozen=True)
class ReferencePhase:
    """A candidate phase with its reflection list.

    Attributes:
        name: label used in reported quantities (``anatase_fraction``).
        structure: the reference pymatgen structure.
        hkl: `k x 3` Miller indices, one representative per reflection family.
        intensity: `k` intensities per unit cell (pymatgen units, multiplicity and LP included).
        cell_mass_amu: mass of the unit cell in atomic mass units.
        crystal_system: pymatgen's crystal system name, which decides the free lattice parameters.
    """

    name: str
    structure: Structure
    hkl: NDArray[np.float64]
    intensity: NDArray[np.float64]
    cell_mass_amu: float
    crystal_system: str
    scattering: StructureFactors | None = None

    def intensities(
        self,
        d_spacings_angstrom: NDArray[np.float64],
        wavelength_angstrom: float,
        *,
        anomalous: bool = False,
        b_iso_angstrom2: float = 0.0,
    ) -> NDArray[np.float64]:
        """`k` intensities per unit cell at the given d-spacings: the reference ones rescaled by the change of
        ``|F|² · LP`` (with the elements' anomalous dispersion at ``wavelength_angstrom`` if ``anomalous``, and the
        displacement factor ``exp(−2 B s²)``); as listed when the phase has no `StructureFactors`."""
        if self.scattering is None:
            return self.intensity
        ratio = self.scattering.ratio(d_spacings_angstrom, wavelength_angstrom, anomalous=anomalous)
        if b_iso_angstrom2:
            ratio = ratio * np.exp(-2.0 * b_iso_angstrom2 * (0.5 / d_spacings_angstrom) ** 2)
        return self.intensity * ratio

    def d_spacings_angstrom(self, lattice_parameters: dict[str, float]) -> NDArray[np.float64]:
        """`k` d-spacings in Å for the given free lattice parameters (see :func:`free_lattice_parameters`)."""
        lattice = _lattice_with(self.structure.lattice, self.crystal_system, lattice_parameters)
        reciprocal = lattice.reciprocal_lattice_crystallographic.matrix
        return 1.0 / np.linalg.norm(self.hkl @ reciprocal, axis=1)

    def cell_volume_angstrom3(self, lattice_parameters: dict[str, float]) -> float:
        return float(_lattice_with(self.structure.lattice, self.crystal_system, lattice_parameters).volume)


@dataclass(frozen=True)
class StructureFactors:
    """What ``|F_hkl|² · LP`` needs at any d-spacing, for a cell whose fractional coordinates stay fixed.

    Attributes:
        phase_sums: `k x e` complex ``Σ_j occ_j exp(2πi hkl·r_j)`` over the sites of each element ``e``.
        symbols: `e` element symbols.
        atomic_numbers: `e` atomic numbers.
        coefficients: `e x c x 2` Cromer-Mann-like ``(a, b)`` pairs of pymatgen's atomic scattering factors,
            ``f(s) = Z − 41.78214 s² Σ a exp(−b s²)``.
        reference: `k` values of ``|F|² · LP`` at the reference d-spacings and wavelength.
    """

    phase_sums: NDArray[np.complex128]
    symbols: tuple[str, ...]
    atomic_numbers: NDArray[np.float64]
    coefficients: NDArray[np.float64]
    reference: NDArray[np.float64]

    @classmethod
    def of(
        cls, structure: Structure, hkl: NDArray[np.float64], d_spacings_angstrom: NDArray[np.float64], wavelength: float
    ) -> StructureFactors:
        from pymatgen.analysis.diffraction.xrd import ATOMIC_SCATTERING_PARAMS

        elements: dict[str, tuple[int, list[NDArray[np.float64]], list[float]]] = {}
        for site in structure:
            for species, occupancy in site.species.items():
                z, coords, occupancies = elements.setdefault(species.symbol, (species.Z, [], []))
                coords.append(site.frac_coords)
                occupancies.append(occupancy)
        phase_sums = np.column_stack(
            [np.exp(2j * np.pi * hkl @ np.array(coords).T) @ np.array(occ) for _, coords, occ in elements.values()]
        )
        atomic_numbers = np.array([float(z) for z, _, _ in elements.values()])
        coefficients = np.array([ATOMIC_SCATTERING_PARAMS[symbol] for symbol in elements], dtype=float)
        reference = _squared_times_lp(phase_sums, atomic_numbers, coefficients, d_spacings_angstrom, wavelength)
        return cls(phase_sums, tuple(elements), atomic_numbers, coefficients, reference)

    def squared_times_lp(
        self, d_spacings_angstrom: NDArray[np.float64], wavelength: float, *, anomalous: bool = False
    ) -> NDArray[np.float64]:
        """`k` values of ``|F|² · LP(θ)`` at these d-spacings (pymatgen's Lorentz-polarisation factor), with the
        elements' f' + i f'' at ``wavelength`` if ``anomalous``."""
        dispersion = anomalous_scattering(self.symbols, wavelength) if anomalous else None
        return _squared_times_lp(
            self.phase_sums, self.atomic_numbers, self.coefficients, d_spacings_angstrom, wavelength, dispersion
        )

    def ratio(
        self, d_spacings_angstrom: NDArray[np.float64], wavelength: float, *, anomalous: bool = False
    ) -> NDArray[np.float64]:
        """`k` factors ``|F|² LP / (|F|² LP)_reference``; 1 for reflections whose reference value is ~0."""
        with np.errstate(divide="ignore", invalid="ignore"):  # a reflection beyond 2θ = 180° has no LP factor
            now = self.squared_times_lp(d_spacings_angstrom, wavelength, anomalous=anomalous)
        tiny = ~(self.reference > 1e-12 * max(float(np.nanmax(self.reference, initial=0.0)), 1e-300))
        ratio = now / np.where(tiny, 1.0, self.reference)
        return np.where(tiny | ~np.isfinite(ratio), 1.0, ratio)


def _squared_times_lp(
    phase_sums: NDArray[np.complex128],
    atomic_numbers: NDArray[np.float64],
    coefficients: NDArray[np.float64],
    d_spacings_angstrom: NDArray[np.float64],
    wavelength: float,
    dispersion: NDArray[np.complex128] | None = None,
) -> NDArray[np.float64]:
    """`k` values of ``|F|² · LP(θ)`` (see `StructureFactors`; its fields are the first three arguments), with
    `e` complex anomalous terms ``f' + i f''`` added to the form factors when ``dispersion`` is given."""
    s2 = (0.5 / d_spacings_angstrom) ** 2
    a, b = coefficients[..., 0], coefficients[..., 1]  # e x c
    form = atomic_numbers - 41.78214 * s2[:, None] * np.sum(a * np.exp(-b * s2[:, None, None]), axis=-1)
    if dispersion is not None:
        form = form + dispersion[None, :]
    structure_factor = np.sum(form * phase_sums, axis=1)
    theta = np.arcsin(np.clip(wavelength / (2.0 * d_spacings_angstrom), 0.0, 1.0))
    lp = (1.0 + np.cos(2.0 * theta) ** 2) / (np.sin(theta) ** 2 * np.cos(theta))
    return np.abs(structure_factor) ** 2 * lp


def free_lattice_parameters(structure: Structure, crystal_system: str) -> dict[str, float]:
    """The lattice parameters a refinement may vary for this crystal system, at their reference values (Å, and
    degrees for angles): the unique ones of the system's metric (a trigonal cell in rhombohedral axes: a, α)."""
    lattice = structure.lattice
    if crystal_system == "cubic":
        return {"a": lattice.a}
    if crystal_system in ("tetragonal", "hexagonal"):
        return {"a": lattice.a, "c": lattice.c}
    if crystal_system == "trigonal":
        if abs(lattice.gamma - 120.0) < 0.5:
            return {"a": lattice.a, "c": lattice.c}
        return {"a": lattice.a, "alpha": lattice.alpha}
    if crystal_system == "orthorhombic":
        return {"a": lattice.a, "b": lattice.b, "c": lattice.c}
    if crystal_system == "monoclinic":
        angles = {"alpha": lattice.alpha, "beta": lattice.beta, "gamma": lattice.gamma}
        unique = max(angles, key=lambda name: abs(angles[name] - 90.0))  # the one angle off 90°, in any setting
        return {"a": lattice.a, "b": lattice.b, "c": lattice.c, unique: angles[unique]}
    return {
        "a": lattice.a,
        "b": lattice.b,
        "c": lattice.c,
        "alpha": lattice.alpha,
        "beta": lattice.beta,
        "gamma": lattice.gamma,
    }


def _lattice_with(reference: Lattice, crystal_system: str, values: dict[str, float]) -> Lattice:
    """The reference lattice with the free parameters ``values`` applied, tied as the crystal system ties them."""
    a = values.get("a", reference.a)
    tied_b = crystal_system in ("cubic", "tetragonal", "hexagonal", "trigonal")
    b = values.get("b", a if tied_b else reference.b)
    rhombohedral = crystal_system == "trigonal" and "alpha" in values
    c = values.get("c", a if crystal_system == "cubic" or rhombohedral else reference.c)
    alpha = values.get("alpha", reference.alpha)
    beta = values.get("beta", alpha if rhombohedral else reference.beta)
    gamma = values.get("gamma", alpha if rhombohedral else reference.gamma)
    return Lattice.from_parameters(a, b, c, alpha, beta, gamma)


@lru_cache(maxsize=512)
def _dispersion(symbols: tuple[str, ...], wavelength_angstrom: float) -> tuple[complex, ...]:
    import xraydb

    energy_ev = 12398.419843 / wavelength_angstrom
    return tuple(
        complex(float(xraydb.f1_chantler(symbol, energy_ev)), float(xraydb.f2_chantler(symbol, energy_ev)))
        for symbol in symbols
    )


def anomalous_scattering(symbols: tuple[str, ...], wavelength_angstrom: float) -> NDArray[np.complex128]:
    """``f' + i f''`` of each element at this wavelength, in electrons (Chantler tables, via ``xraydb``)."""
    return np.array(_dispersion(tuple(symbols), round(float(wavelength_angstrom), 6)), dtype=complex)


@cache
def _reflections(structure_json: str, wavelength_angstrom: float, two_theta_max_deg: float) -> tuple:
    structure = Structure.from_str(structure_json, fmt="json")
    pattern = XRDCalculator(wavelength=wavelength_angstrom).get_pattern(
        structure, scaled=False, two_theta_range=(0.0, min(two_theta_max_deg, 179.0))
    )
    hkl = np.array(
        [
            family[0]["hkl"][-3:] if len(family[0]["hkl"]) == 3 else _hexagonal_to_hkl(family[0]["hkl"])
            for family in pattern.hkls
        ],
        dtype=float,
    )
    return hkl, np.asarray(pattern.y, dtype=float)


def _hexagonal_to_hkl(hkil: tuple[int, ...]) -> tuple[int, int, int]:
    h, k, _i, ell = hkil
    return (h, k, ell)


def load_reference_phase(
    source: str | Path | Structure, radiation: Radiation, two_theta_max_deg: float, name: str | None = None
) -> ReferencePhase:
    """Build a :class:`ReferencePhase` from a pymatgen structure, a CIF path, or a built-in library name.

    Reflections are listed up to ``two_theta_max_deg`` plus a margin, computed at the longest wavelength.
    """
    if isinstance(source, Structure):
        structure, label = source, name or source.composition.reduced_formula
    else:
        path = Path(source)
        if path.suffix.lower() != ".cif":
            path = PHASE_LIBRARY / f"{source}.cif"
            if not path.exists():
                known = ", ".join(sorted(p.stem for p in PHASE_LIBRARY.glob("*.cif")))
                raise ValueError(f"unknown reference phase {source!r}; built-in phases: {known}; or give a .cif path")
        if not path.exists():
            raise ValueError(f"reference phase file {path} does not exist")
        structure, label = Structure.from_file(path), name or path.stem
    longest = max(w for w, _ in radiation.lines())
    # Reflections at the shortest wavelength reach the highest angle: list them up to the window's end.
    shortest = min(w for w, _ in radiation.lines())
    d_min = shortest / (2 * np.sin(np.radians(min(two_theta_max_deg + 5.0, 179.0) / 2)))
    two_theta_at_longest = 2 * np.degrees(np.arcsin(min(longest / (2 * d_min), 1.0)))
    hkl, intensity = _reflections(structure.to_json(), radiation.wavelength_angstrom, float(two_theta_at_longest))
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    crystal_system = SpacegroupAnalyzer(structure, symprec=0.01).get_crystal_system()
    phase = ReferencePhase(
        name=label,
        structure=structure,
        hkl=hkl,
        intensity=intensity,
        cell_mass_amu=float(structure.composition.weight),
        crystal_system=crystal_system,
    )
    d_reference = phase.d_spacings_angstrom(free_lattice_parameters(structure, crystal_system))
    scattering = StructureFactors.of(structure, hkl, d_reference, radiation.wavelength_angstrom)
    return replace(phase, scattering=scattering)


def phase_pattern(
    phase: ReferencePhase,
    two_theta_deg: NDArray[np.float64],
    radiation: Radiation,
    lattice_parameters: dict[str, float],
    crystallite_size_nm: float,
    microstrain: float,
    zero_shift_deg: float,
    caglioti_uvw_deg2: tuple[float, float, float],
    *,
    asymmetry: float = 0.0,
    b_iso_angstrom2: float = 0.0,
    anomalous: bool = False,
    displacement_deg: float = 0.0,
) -> NDArray[np.float64]:
    """Unit-scale pattern of one phase on the grid ``two_theta_deg`` (`n`-dim): Σ_k I_k · profile_k.

    Args:
        asymmetry: ``A`` of the axial-divergence asymmetry ``a = A / tan 2θ`` (0: symmetric peaks).
        b_iso_angstrom2: the phase's isotropic displacement parameter B in Å².
        anomalous: include each element's anomalous dispersion at each line's wavelength.
        displacement_deg: the sample-height error's shift at 2θ = 90°: peaks move by ``displacement · cos θ / cos 45°``
            (in addition to ``zero_shift_deg``, which moves every peak alike).
    """
    d = phase.d_spacings_angstrom(lattice_parameters)
    u, v, w = caglioti_uvw_deg2
    size_angstrom = 10.0 * crystallite_size_nm
    primary = radiation.wavelength_angstrom

    def widths_at(two_theta: NDArray[np.float64]) -> tuple[NDArray, NDArray, NDArray]:
        theta = np.radians(two_theta) / 2.0
        tan_theta = np.tan(theta)
        gaussian = np.sqrt(np.maximum(u * tan_theta**2 + v * tan_theta + w, 1e-8))
        size_term = SPHERE_FWHM_K * primary / (size_angstrom * np.cos(theta))
        lorentzian = np.degrees(size_term + 4.0 * microstrain * tan_theta)
        with np.errstate(divide="ignore"):
            a = np.clip(asymmetry / np.tan(2.0 * theta), -0.6, 0.6) if asymmetry else np.zeros_like(theta)
        return gaussian, np.maximum(lorentzian, 1e-6), a

    centres, heights = [], []
    for wavelength, ratio in radiation.lines():
        sin_theta = wavelength / (2.0 * d)
        valid = sin_theta < 1.0
        theta = np.arcsin(sin_theta[valid])
        intensity = phase.intensities(d, wavelength, anomalous=anomalous, b_iso_angstrom2=b_iso_angstrom2)
        centres.append(np.degrees(2.0 * theta) + zero_shift_deg + displacement_deg * np.cos(theta) / np.cos(np.pi / 4))
        heights.append(intensity[valid] * ratio)
    return render(two_theta_deg, np.concatenate(centres), np.concatenate(heights), widths_at)
