"""The analysis's forward model of a powder pattern: reflections of reference phases and their peak profiles.

Reflection lists come from pymatgen's ``XRDCalculator`` once per reference phase (intensities per unit cell,
including Lorentz-polarisation and multiplicity, ``scaled=False``). Peak positions are then recomputed from the
refined lattice parameters through the reciprocal metric, so a lattice refinement never calls pymatgen again.
Intensities follow the refined lattice too: each is rescaled by the change of ``|F(s)|² · LP(θ)`` at its new
``s = 1 / 2d`` (atomic form factors as pymatgen's, fractional coordinates fixed). A cell 0.7 % larger moves
anatase's intensities by up to 2.6 %, which a fit with fixed intensities turns into a weight-fraction error
several times its reported uncertainty.

Profiles are pseudo-Voigt functions with the Thompson-Cox-Hastings (TCH) mixing of a Gaussian instrumental width
(Caglioti: Γ_G² = U tan²θ + V tanθ + W, in deg²) and a Lorentzian sample width from crystallite size (Scherrer,
K = 0.9) and microstrain (4 ε tanθ). Each profile integrates to one over 2θ in degrees.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure

__all__ = [
    "ReferencePhase",
    "StructureFactors",
    "Radiation",
    "load_reference_phase",
    "pseudo_voigt_tch",
    "phase_pattern",
    "free_lattice_parameters",
]

SCHERRER_K = 0.9
PHASE_LIBRARY = Path(__file__).parent / "phase_library"


@dataclass(frozen=True)
class Radiation:
    """X-ray radiation: the primary wavelength and an optional Kα2 line, in Å."""

    wavelength_angstrom: float
    wavelength_ka2_angstrom: float | None = None
    ka2_ratio: float = 0.5

    def lines(self) -> list[tuple[float, float]]:
        """``(wavelength_angstrom, relative_intensity)`` of each line."""
        if self.wavelength_ka2_angstrom is None:
            return [(self.wavelength_angstrom, 1.0)]
        return [(self.wavelength_angstrom, 1.0), (self.wavelength_ka2_angstrom, self.ka2_ratio)]


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

    def intensities(self, d_spacings_angstrom: NDArray[np.float64], wavelength_angstrom: float) -> NDArray[np.float64]:
        """`k` intensities per unit cell at the given d-spacings (the reference ones rescaled by the change of
        ``|F|² · LP``; as listed when the phase has no `StructureFactors`)."""
        if self.scattering is None:
            return self.intensity
        return self.intensity * self.scattering.ratio(d_spacings_angstrom, wavelength_angstrom)

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
        atomic_numbers: `e` atomic numbers.
        coefficients: `e x c x 2` Cromer-Mann-like ``(a, b)`` pairs of pymatgen's atomic scattering factors,
            ``f(s) = Z − 41.78214 s² Σ a exp(−b s²)``.
        reference: `k` values of ``|F|² · LP`` at the reference d-spacings and wavelength.
    """

    phase_sums: NDArray[np.complex128]
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
        return cls(phase_sums, atomic_numbers, coefficients, reference)

    def squared_times_lp(self, d_spacings_angstrom: NDArray[np.float64], wavelength: float) -> NDArray[np.float64]:
        """`k` values of ``|F|² · LP(θ)`` at these d-spacings (pymatgen's Lorentz-polarisation factor)."""
        return _squared_times_lp(
            self.phase_sums, self.atomic_numbers, self.coefficients, d_spacings_angstrom, wavelength
        )

    def ratio(self, d_spacings_angstrom: NDArray[np.float64], wavelength: float) -> NDArray[np.float64]:
        """`k` factors ``|F|² LP / (|F|² LP)_reference``; 1 for reflections whose reference value is ~0."""
        with np.errstate(divide="ignore", invalid="ignore"):  # a reflection beyond 2θ = 180° has no LP factor
            now = self.squared_times_lp(d_spacings_angstrom, wavelength)
        tiny = ~(self.reference > 1e-12 * max(float(np.nanmax(self.reference, initial=0.0)), 1e-300))
        ratio = now / np.where(tiny, 1.0, self.reference)
        return np.where(tiny | ~np.isfinite(ratio), 1.0, ratio)


def _squared_times_lp(
    phase_sums: NDArray[np.complex128],
    atomic_numbers: NDArray[np.float64],
    coefficients: NDArray[np.float64],
    d_spacings_angstrom: NDArray[np.float64],
    wavelength: float,
) -> NDArray[np.float64]:
    """`k` values of ``|F|² · LP(θ)`` (see `StructureFactors`; its fields are the first three arguments)."""
    s2 = (0.5 / d_spacings_angstrom) ** 2
    a, b = coefficients[..., 0], coefficients[..., 1]  # e x c
    form = atomic_numbers - 41.78214 * s2[:, None] * np.sum(a * np.exp(-b * s2[:, None, None]), axis=-1)
    structure_factor = np.sum(form * phase_sums, axis=1)
    theta = np.arcsin(np.clip(wavelength / (2.0 * d_spacings_angstrom), 0.0, 1.0))
    lp = (1.0 + np.cos(2.0 * theta) ** 2) / (np.sin(theta) ** 2 * np.cos(theta))
    return np.abs(structure_factor) ** 2 * lp


def free_lattice_parameters(structure: Structure, crystal_system: str) -> dict[str, float]:
    """The lattice parameters a refinement may vary for this crystal system, at their reference values (Å)."""
    lattice = structure.lattice
    if crystal_system == "cubic":
        return {"a": lattice.a}
    if crystal_system in ("tetragonal", "hexagonal", "trigonal"):
        return {"a": lattice.a, "c": lattice.c}
    if crystal_system == "orthorhombic":
        return {"a": lattice.a, "b": lattice.b, "c": lattice.c}
    return {}


def _lattice_with(reference: Lattice, crystal_system: str, values: dict[str, float]) -> Lattice:
    a = values.get("a", reference.a)
    b = values.get("b", a if crystal_system in ("cubic", "tetragonal", "hexagonal", "trigonal") else reference.b)
    c = values.get("c", a if crystal_system == "cubic" else reference.c)
    return Lattice.from_parameters(a, b, c, reference.alpha, reference.beta, reference.gamma)


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


def pseudo_voigt_tch(
    offset_deg: NDArray[np.float64], gaussian_fwhm_deg: NDArray[np.float64], lorentzian_fwhm_deg: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Area-normalised TCH pseudo-Voigt.

    Args:
        offset_deg: `k x n` distances 2θ − 2θ_k in degrees.
        gaussian_fwhm_deg: `k x 1` Gaussian FWHM Γ_G in degrees.
        lorentzian_fwhm_deg: `k x 1` Lorentzian FWHM Γ_L in degrees.

    Returns:
        `k x n` profile values in 1/degree.
    """
    g, lo = gaussian_fwhm_deg, lorentzian_fwhm_deg
    fwhm = (
        g**5 + 2.69269 * g**4 * lo + 2.42843 * g**3 * lo**2 + 4.47163 * g**2 * lo**3 + 0.07842 * g * lo**4 + lo**5
    ) ** 0.2
    q = lo / fwhm
    eta = 1.36603 * q - 0.47719 * q**2 + 0.11116 * q**3
    x2 = (offset_deg / fwhm) ** 2
    gauss = (2.0 / fwhm) * np.sqrt(np.log(2) / np.pi) * np.exp(-4.0 * np.log(2) * x2)
    lorentz = (2.0 / (np.pi * fwhm)) / (1.0 + 4.0 * x2)
    return eta * lorentz + (1.0 - eta) * gauss


def phase_pattern(
    phase: ReferencePhase,
    two_theta_deg: NDArray[np.float64],
    radiation: Radiation,
    lattice_parameters: dict[str, float],
    crystallite_size_nm: float,
    microstrain: float,
    zero_shift_deg: float,
    caglioti_uvw_deg2: tuple[float, float, float],
) -> NDArray[np.float64]:
    """Unit-scale pattern of one phase on the grid ``two_theta_deg`` (`n`-dim): Σ_k I_k · profile_k."""
    d = phase.d_spacings_angstrom(lattice_parameters)
    intensities = phase.intensities(d, radiation.wavelength_angstrom)
    u, v, w = caglioti_uvw_deg2
    total = np.zeros_like(two_theta_deg)
    lo_deg, hi_deg = two_theta_deg[0], two_theta_deg[-1]
    for wavelength, ratio in radiation.lines():
        sin_theta = wavelength / (2.0 * d)
        valid = sin_theta < 1.0
        theta = np.arcsin(sin_theta[valid])
        centre = np.degrees(2.0 * theta) + zero_shift_deg
        keep = (centre > lo_deg - 3.0) & (centre < hi_deg + 3.0)
        if not np.any(keep):
            continue
        theta, centre = theta[keep], centre[keep]
        intensity = intensities[valid][keep] * ratio
        tan_theta = np.tan(theta)
        gaussian = np.sqrt(np.maximum(u * tan_theta**2 + v * tan_theta + w, 1e-8))
        size_angstrom = 10.0 * crystallite_size_nm
        lorentzian = np.degrees(
            SCHERRER_K * wavelength / (size_angstrom * np.cos(theta)) + 4.0 * microstrain * tan_theta
        )
        profiles = pseudo_voigt_tch(two_theta_deg[None, :] - centre[:, None], gaussian[:, None], lorentzian[:, None])
        total += intensity @ profiles
    return total
