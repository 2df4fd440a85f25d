"""Ground truth of a co-sputtered Mg–Zn–Ce oxide composition-spread library, for phase-mapping campaigns.

The library (an 80 × 80 mm substrate) is made by three sputter sources 60 mm from its centre at 90° (Mg),
210° (Zn) and 330° (Ce); each deposits ``exp(−d² / (2 · 40²))`` (d in mm) at a point, so the cation fractions at
``(wafer_x_mm, wafer_y_mm)`` are the normalised deposits. After annealing, the pseudo-ternary MgO–ZnO–CeO2 phase
diagram decides the phases:

- fluorite CeO2 dissolves neither Mg nor Zn, and the rock-salt and wurtzite phases dissolve no Ce, so all Ce
  forms CeO2;
- the Mg:Zn balance ``z = Zn / (Mg + Zn)`` follows the MgO–ZnO pseudo-binary: rock salt (Mg,Zn)O up to
  ``z = 0.30``, wurtzite (Zn,Mg)O from ``z = 0.85``, and both in between by the lever rule (tie lines at 0.30 and
  0.85).

The full triangle has single-phase edges, but the wafer never reaches them: every point receives all three
cations (even beside a source its cation is at most 91 % of the deposit), so fluorite CeO2 is everywhere and the wafer
holds three phase regions: rock salt + fluorite, wurtzite + fluorite, and the three-phase field rock salt +
wurtzite + fluorite (on a 41 × 41 grid over the wafer: 32 %, 15 % and 53 % of the points).
Lattice parameters follow Vegard's law within each phase: rock salt
``a = 4.212 + 0.068 z_rs``; wurtzite ``a = 3.2498 + 0.03 m``, ``c = 5.2066 − 0.12 m`` (m = Mg share); fluorite
5.411 Å. Crystallite sizes: rock salt 25 nm, wurtzite 30 nm, fluorite 15 nm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from pymatgen.core import Structure

from sim_lab import phases
from sim_lab.scenarios.base import Parameter, SampleTruth, Scenario
from sim_lab.xrd import PhaseInSample

__all__ = ["MgZnCeOxideSpread"]

_FORMULA_WEIGHT = {"MgO": 40.304, "ZnO": 81.38, "CeO2": 172.115}
_SOURCES_DEG = {"mg": 90.0, "zn": 210.0, "ce": 330.0}
_MIN_WEIGHT_FRACTION = 1e-3


def _occupancy(shares: dict[str, float]) -> dict[str, float] | str:
    present = {element: share for element, share in shares.items() if share > 1e-9}
    return next(iter(present)) if len(present) == 1 else present


@dataclass(frozen=True)
class MgZnCeOxideSpread(Scenario):
    """A composition-spread library; see the module docstring for the truth."""

    name: ClassVar[str] = "mg_zn_ce_oxide_spread"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("wafer_x_mm", -40.0, 40.0, "mm"),
        Parameter("wafer_y_mm", -40.0, 40.0, "mm"),
    )
    techniques: ClassVar[tuple[str, ...]] = ("diffractometer",)

    source_radius_mm: float = 60.0
    plume_sigma_mm: float = 40.0
    zn_in_rock_salt_max: float = 0.30
    zn_in_wurtzite_min: float = 0.85

    def synthesis_duration_s(self, conditions: Mapping[str, float]) -> float:
        """Cutting and loading one library point (the library itself is made once): 5 min."""
        return 300.0

    def composition(self, wafer_x_mm: float, wafer_y_mm: float) -> dict[str, float]:
        """Cation fractions ``{"mg", "zn", "ce"}`` at a point of the library."""
        deposits = {}
        for cation, angle in _SOURCES_DEG.items():
            sx = self.source_radius_mm * math.cos(math.radians(angle))
            sy = self.source_radius_mm * math.sin(math.radians(angle))
            d2 = (wafer_x_mm - sx) ** 2 + (wafer_y_mm - sy) ** 2
            deposits[cation] = math.exp(-d2 / (2.0 * self.plume_sigma_mm**2))
        total = sum(deposits.values())
        return {cation: value / total for cation, value in deposits.items()}

    def quantities(self, conditions: Mapping[str, float]) -> dict[str, float]:
        c = self.validate(conditions)
        comp = self.composition(c["wafer_x_mm"], c["wafer_y_mm"])
        mg, zn, ce = comp["mg"], comp["zn"], comp["ce"]
        z = zn / (mg + zn)
        low, high = self.zn_in_rock_salt_max, self.zn_in_wurtzite_min
        if z <= low:
            wurtzite_share, z_rs, z_wz = 0.0, z, high
        elif z >= high:
            wurtzite_share, z_rs, z_wz = 1.0, low, z
        else:
            wurtzite_share, z_rs, z_wz = (z - low) / (high - low), low, high
        moles = {  # formula units per cation of the whole library point
            "rocksalt": (mg + zn) * (1.0 - wurtzite_share),
            "wurtzite": (mg + zn) * wurtzite_share,
            "fluorite": ce,
        }
        weights = {
            "rocksalt": z_rs * _FORMULA_WEIGHT["ZnO"] + (1.0 - z_rs) * _FORMULA_WEIGHT["MgO"],
            "wurtzite": z_wz * _FORMULA_WEIGHT["ZnO"] + (1.0 - z_wz) * _FORMULA_WEIGHT["MgO"],
            "fluorite": _FORMULA_WEIGHT["CeO2"],
        }
        mass = {name: moles[name] * weights[name] for name in moles}
        total = sum(mass.values())
        fractions = {f"{name}_fraction": value / total for name, value in mass.items()}
        return {
            "mg_fraction": mg,
            "zn_fraction": zn,
            "ce_fraction": ce,
            **fractions,
            "n_phases": float(sum(value >= _MIN_WEIGHT_FRACTION for value in fractions.values())),
            "rocksalt_zn_share": z_rs,
            "wurtzite_zn_share": z_wz,
            "rocksalt_a_angstrom": 4.212 + 0.068 * z_rs,
            "wurtzite_a_angstrom": 3.2498 + 0.03 * (1.0 - z_wz),
            "wurtzite_c_angstrom": 5.2066 - 0.12 * (1.0 - z_wz),
            "fluorite_a_angstrom": 5.411,
        }

    def truth(self, conditions: Mapping[str, float]) -> SampleTruth:
        q = self.quantities(conditions)
        sample = []
        if q["rocksalt_fraction"] >= _MIN_WEIGHT_FRACTION:
            z = q["rocksalt_zn_share"]
            structure = phases.rock_salt(q["rocksalt_a_angstrom"], "Mg")
            structure.replace_species({"Mg": _occupancy({"Mg": 1.0 - z, "Zn": z})})
            sample.append(PhaseInSample("rocksalt", structure, q["rocksalt_fraction"], 25.0, 1e-3))
        if q["wurtzite_fraction"] >= _MIN_WEIGHT_FRACTION:
            z = q["wurtzite_zn_share"]
            structure = phases.wurtzite(q["wurtzite_a_angstrom"], q["wurtzite_c_angstrom"], "Zn")
            structure.replace_species({"Zn": _occupancy({"Zn": z, "Mg": 1.0 - z})})
            sample.append(PhaseInSample("wurtzite", structure, q["wurtzite_fraction"], 30.0, 1e-3))
        if q["fluorite_fraction"] >= _MIN_WEIGHT_FRACTION:
            structure = phases.fluorite(q["fluorite_a_angstrom"], "Ce")
            sample.append(PhaseInSample("fluorite", structure, q["fluorite_fraction"], 15.0, 1e-3))
        return SampleTruth(phases=sample, quantities=q)

    def candidate_phases(self) -> dict[str, Structure]:
        return {
            "rocksalt": phases.rock_salt(4.212, "Mg"),
            "wurtzite": phases.wurtzite(),
            "fluorite": phases.fluorite(5.411, "Ce"),
        }
