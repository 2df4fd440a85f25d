"""Crystal phases of the simulated lab, built from space group, lattice and Wyckoff positions with pymatgen.

Lattice parameters are in Å. The dopant shifts follow Vegard's law with approximate slopes for Zr4+ on the
Ti4+ site (Zr4+ is larger than Ti4+: Shannon radii 0.72 Å vs 0.605 Å in six-fold coordination), so both cells
expand linearly with the dopant fraction ``x``. The slopes are illustrative, not fitted to one data set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymatgen.core import Lattice, Structure

__all__ = [
    "ANATASE_A_ANGSTROM",
    "ANATASE_C_ANGSTROM",
    "RUTILE_A_ANGSTROM",
    "RUTILE_C_ANGSTROM",
    "TetragonalCell",
    "anatase",
    "rutile",
    "anatase_cell",
    "rutile_cell",
    "rock_salt",
    "fluorite",
    "palladium_oxide",
    "fcc_metal",
    "corundum",
    "wurtzite",
]

ANATASE_A_ANGSTROM = 3.7852
ANATASE_C_ANGSTROM = 9.5139
RUTILE_A_ANGSTROM = 4.5937
RUTILE_C_ANGSTROM = 2.9587

# Vegard slopes d(a)/dx, d(c)/dx in Å per unit Zr fraction (approximate).
_ANATASE_VEGARD_A = 0.12
_ANATASE_VEGARD_C = 0.45
_RUTILE_VEGARD_A = 0.15
_RUTILE_VEGARD_C = 0.10


_ORBITS: dict[tuple[object, ...], tuple[list[str], np.ndarray]] = {}


def _from_spacegroup(spacegroup: int, lattice: Lattice, species: list[str], coords: list[list[float]]) -> Structure:
    """``Structure.from_spacegroup``, with the symmetry expansion cached per space group, species and positions.

    pymatgen rebuilds a space group's operations on every call (~0.3 s for Fm-3m); the orbit of the Wyckoff
    positions in fractional coordinates does not depend on the lattice lengths, so it is expanded once.
    """
    key = (spacegroup, tuple(species), tuple(tuple(c) for c in coords))
    if key not in _ORBITS:
        prototype = Structure.from_spacegroup(spacegroup, lattice, species, coords)
        _ORBITS[key] = ([site.species_string for site in prototype], prototype.frac_coords.copy())
    names, frac = _ORBITS[key]
    return Structure(lattice, names, frac)


@dataclass(frozen=True)
class TetragonalCell:
    """Lattice parameters of a tetragonal cell, in Å."""

    a_angstrom: float
    c_angstrom: float


def anatase_cell(dopant_fraction: float = 0.0) -> TetragonalCell:
    """Anatase cell with Zr fraction ``x`` on the Ti site: a = 3.7852 + 0.12 x, c = 9.5139 + 0.45 x (Å)."""
    x = dopant_fraction
    return TetragonalCell(ANATASE_A_ANGSTROM + _ANATASE_VEGARD_A * x, ANATASE_C_ANGSTROM + _ANATASE_VEGARD_C * x)


def rutile_cell(dopant_fraction: float = 0.0) -> TetragonalCell:
    """Rutile cell with Zr fraction ``x`` on the Ti site: a = 4.5937 + 0.15 x, c = 2.9587 + 0.10 x (Å)."""
    x = dopant_fraction
    return TetragonalCell(RUTILE_A_ANGSTROM + _RUTILE_VEGARD_A * x, RUTILE_C_ANGSTROM + _RUTILE_VEGARD_C * x)


def anatase(a_angstrom: float = ANATASE_A_ANGSTROM, c_angstrom: float = ANATASE_C_ANGSTROM) -> Structure:
    """Anatase TiO2, I4_1/amd (No. 141, origin choice 1): Ti on 4a (0,0,0), O on 8e (0,0,0.2081); Z = 4."""
    lattice = Lattice.tetragonal(a_angstrom, c_angstrom)
    return _from_spacegroup(141, lattice, ["Ti", "O"], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.2081]])


def rutile(a_angstrom: float = RUTILE_A_ANGSTROM, c_angstrom: float = RUTILE_C_ANGSTROM) -> Structure:
    """Rutile TiO2, P4_2/mnm (No. 136): Ti on 2a (0, 0, 0), O on 4f (0.3053, 0.3053, 0); Z = 2."""
    lattice = Lattice.tetragonal(a_angstrom, c_angstrom)
    return _from_spacegroup(136, lattice, ["Ti", "O"], [[0.0, 0.0, 0.0], [0.3053, 0.3053, 0.0]])


def rock_salt(a_angstrom: float, cation: str = "Ni") -> Structure:
    """Rock-salt monoxide MO, Fm-3m (No. 225): M on 4a (0, 0, 0), O on 4b (½, ½, ½); Z = 4 (NiO a = 4.177 Å)."""
    return _from_spacegroup(225, Lattice.cubic(a_angstrom), [cation, "O"], [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])


def fluorite(a_angstrom: float = 5.411, cation: str = "Ce") -> Structure:
    """Fluorite dioxide MO2, Fm-3m (No. 225): M on 4a (0, 0, 0), O on 8c (¼, ¼, ¼); Z = 4 (CeO2 a = 5.411 Å)."""
    return _from_spacegroup(225, Lattice.cubic(a_angstrom), [cation, "O"], [[0.0, 0.0, 0.0], [0.25, 0.25, 0.25]])


def palladium_oxide(a_angstrom: float = 3.043, c_angstrom: float = 5.337) -> Structure:
    """PdO, P4_2/mmc (No. 131): Pd on 2c (0, ½, 0), O on 2e (0, 0, ¼); Z = 2."""
    lattice = Lattice.tetragonal(a_angstrom, c_angstrom)
    return _from_spacegroup(131, lattice, ["Pd", "O"], [[0.0, 0.5, 0.0], [0.0, 0.0, 0.25]])


def fcc_metal(a_angstrom: float = 3.891, element: str = "Pd") -> Structure:
    """An fcc metal, Fm-3m (No. 225), atom on 4a (0, 0, 0) (Pd a = 3.891 Å)."""
    return _from_spacegroup(225, Lattice.cubic(a_angstrom), [element], [[0.0, 0.0, 0.0]])


def corundum(a_angstrom: float = 4.7589, c_angstrom: float = 12.991) -> Structure:
    """α-Al2O3, R-3c (No. 167, hexagonal axes): Al on 12c (0, 0, 0.35216), O on 18e (0.30624, 0, ¼); Z = 6."""
    lattice = Lattice.hexagonal(a_angstrom, c_angstrom)
    return _from_spacegroup(167, lattice, ["Al", "O"], [[0.0, 0.0, 0.35216], [0.30624, 0.0, 0.25]])


def wurtzite(a_angstrom: float = 3.2498, c_angstrom: float = 5.2066, cation: str = "Zn") -> Structure:
    """Wurtzite MO, P6_3mc (No. 186): M on 2b (⅓, ⅔, 0), O on 2b (⅓, ⅔, 0.382); Z = 2 (ZnO)."""
    lattice = Lattice.hexagonal(a_angstrom, c_angstrom)
    return _from_spacegroup(186, lattice, [cation, "O"], [[1 / 3, 2 / 3, 0.0], [1 / 3, 2 / 3, 0.382]])
