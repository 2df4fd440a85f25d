"""Crystal phases of the simulated lab, built from space group, lattice and Wyckoff positions with pymatgen.

Lattice parameters are in Å. The dopant shifts follow Vegard's law with approximate slopes for Zr4+ on the
Ti4+ site (Zr4+ is larger than Ti4+: Shannon radii 0.72 Å vs 0.605 Å in six-fold coordination), so both cells
expand linearly with the dopant fraction ``x``. The slopes are illustrative, not fitted to one data set.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    return Structure.from_spacegroup(141, lattice, ["Ti", "O"], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.2081]])


def rutile(a_angstrom: float = RUTILE_A_ANGSTROM, c_angstrom: float = RUTILE_C_ANGSTROM) -> Structure:
    """Rutile TiO2, P4_2/mnm (No. 136): Ti on 2a (0, 0, 0), O on 4f (0.3053, 0.3053, 0); Z = 2."""
    lattice = Lattice.tetragonal(a_angstrom, c_angstrom)
    return Structure.from_spacegroup(136, lattice, ["Ti", "O"], [[0.0, 0.0, 0.0], [0.3053, 0.3053, 0.0]])
