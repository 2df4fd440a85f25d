"""Ground truth of a Ni–Pd / CeO2–ZrO2 / Al2O3 catalyst calcined in air, in the spirit of PQ-Net's multi-phase oxides.

The truth (x = zr_fraction in Ce(1−x)Zr(x)O2, Ni and Pd loadings in wt % metal, T_c = calcination temperature)
---------------------------------------------------------------------------------------------------------------
Phases and weight fractions: NiO carries all Ni (``w = 1.2726 · Ni wt %``); PdO decomposes to Pd metal in air
around 790 °C (fraction metallic ``f = 1 / (1 + exp(−(T_c − 790)/15))``; ``w_PdO = 1.1503 (1 − f) Pd wt %``,
``w_Pd = f · Pd wt %``); the rest is the support, 30 wt % fluorite Ce(1−x)Zr(x)O2 and 70 wt % α-Al2O3.

Crystallite sizes (nm; soft cap ``D (1 + (D/D_max)⁴)^(−1/4)``)::

    NiO     4 + 8 (Ni/10)^1.5 exp((T_c − 500)/250)               (sintering grows with loading; D_max 80)
    CeZrO2  3 + 3 exp((T_c − 400)/150) exp(−2 x)                   (Zr slows coarsening; D_max 80)
    PdO     3 + 2 exp((T_c − 400)/200);  Pd 15;  Al2O3 40

Lattice: ``a(CeZrO2) = 5.411 − 0.32 x + 0.1 ce3`` (Vegard towards cubic ZrO2, expanded by Ce3+), NiO 4.177, PdO
3.043/5.337, Pd 3.891, α-Al2O3 4.7589/12.991 Å. Ce3+ fraction (XAS Ce L3): ``0.03 + 0.3 x + 0.5 / D_CeZrO2``.
Derived objective: NiO surface area ``6000 w_NiO / (ρ_NiO D_NiO)`` m²/g of catalyst (ρ = 6.67 g/cm³), which
trades loading against sintering. The numbers are plausible, not fitted to one catalyst.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from pymatgen.core import Structure

from sim_lab import phases
from sim_lab.scenarios.base import Parameter, SampleTruth, Scenario, furnace_duration_s
from sim_lab.xrd import PhaseInSample

__all__ = ["CeriaZirconiaCatalyst"]

_NIO_PER_NI = 74.692 / 58.693
_PDO_PER_PD = 122.42 / 106.42
_NIO_DENSITY_G_CM3 = 6.67
_MIN_WEIGHT_FRACTION = 1e-3


def _cap(size_nm: float, max_nm: float) -> float:
    return size_nm * (1.0 + (size_nm / max_nm) ** 4) ** -0.25


@dataclass(frozen=True)
class CeriaZirconiaCatalyst(Scenario):
    """A supported Ni–Pd catalyst on ceria–zirconia/alumina; see the module docstring for the truth."""

    name: ClassVar[str] = "ceria_zirconia_catalyst"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("zr_fraction", 0.0, 0.5, "mol Zr / mol (Ce+Zr)"),
        Parameter("ni_loading_wt", 0.0, 20.0, "wt % Ni"),
        Parameter("pd_loading_wt", 0.0, 5.0, "wt % Pd"),
        Parameter("calcination_temperature_c", 400.0, 900.0, "degC"),
    )
    techniques: ClassVar[tuple[str, ...]] = ("diffractometer", "pdf", "xas")

    ceria_zirconia_share_of_support: float = 0.3
    pdo_decomposition_c: float = 790.0

    def synthesis_duration_s(self, conditions: Mapping[str, float]) -> float:
        """Impregnation and drying (2 h), then calcination at 10 °C/min with a 4 h dwell."""
        return 7200.0 + furnace_duration_s(float(conditions["calcination_temperature_c"]), 4.0)

    def quantities(self, conditions: Mapping[str, float]) -> dict[str, float]:
        c = self.validate(conditions)
        x, ni, pd, t = c["zr_fraction"], c["ni_loading_wt"], c["pd_loading_wt"], c["calcination_temperature_c"]
        metallic = 1.0 / (1.0 + math.exp(-(t - self.pdo_decomposition_c) / 15.0))
        w_nio = _NIO_PER_NI * ni / 100.0
        w_pdo = _PDO_PER_PD * (1.0 - metallic) * pd / 100.0
        w_pd = metallic * pd / 100.0
        support = 1.0 - w_nio - w_pdo - w_pd
        d_nio = _cap(4.0 + 8.0 * (ni / 10.0) ** 1.5 * math.exp((t - 500.0) / 250.0), 80.0)
        d_cz = _cap(3.0 + 3.0 * math.exp((t - 400.0) / 150.0) * math.exp(-2.0 * x), 80.0)
        ce3 = 0.03 + 0.3 * x + 0.5 / d_cz
        return {
            "nio_fraction": w_nio,
            "pdo_fraction": w_pdo,
            "pd_fraction": w_pd,
            "ceria_zirconia_fraction": self.ceria_zirconia_share_of_support * support,
            "alumina_fraction": (1.0 - self.ceria_zirconia_share_of_support) * support,
            "nio_crystallite_size_nm": d_nio,
            "ceria_zirconia_crystallite_size_nm": d_cz,
            "pdo_crystallite_size_nm": 3.0 + 2.0 * math.exp((t - 400.0) / 200.0),
            "pd_crystallite_size_nm": 15.0,
            "alumina_crystallite_size_nm": 40.0,
            "ceria_zirconia_a_angstrom": 5.411 - 0.32 * x + 0.1 * ce3,
            "nio_a_angstrom": 4.177,
            "ce3_fraction": ce3,
            "nio_surface_area_m2_per_g": 6000.0 * w_nio / (_NIO_DENSITY_G_CM3 * d_nio),
        }

    def truth(self, conditions: Mapping[str, float]) -> SampleTruth:
        c = self.validate(conditions)
        q = self.quantities(c)
        x = c["zr_fraction"]
        ceria_zirconia = phases.fluorite(q["ceria_zirconia_a_angstrom"], "Ce")
        if x > 0:
            ceria_zirconia.replace_species({"Ce": {"Ce": 1.0 - x, "Zr": x}})
        candidates = [
            ("nio", phases.rock_salt(q["nio_a_angstrom"], "Ni"), 5e-4),
            ("pdo", phases.palladium_oxide(), 5e-4),
            ("pd", phases.fcc_metal(3.891, "Pd"), 2e-4),
            ("ceria_zirconia", ceria_zirconia, 1e-3),
            ("alumina", phases.corundum(), 2e-4),
        ]
        sample = [
            PhaseInSample(name, structure, q[f"{name}_fraction"], q[f"{name}_crystallite_size_nm"], strain)
            for name, structure, strain in candidates
            if q[f"{name}_fraction"] >= _MIN_WEIGHT_FRACTION
        ]
        ce3 = q["ce3_fraction"]
        return SampleTruth(phases=sample, quantities=q, oxidation_states={"Ce_L3": {"Ce3+": ce3, "Ce4+": 1.0 - ce3}})

    def candidate_phases(self) -> dict[str, Structure]:
        return {
            "nio": phases.rock_salt(4.177, "Ni"),
            "pdo": phases.palladium_oxide(),
            "pd": phases.fcc_metal(3.891, "Pd"),
            "ceria_zirconia": phases.fluorite(5.411, "Ce"),
            "alumina": phases.corundum(),
        }
