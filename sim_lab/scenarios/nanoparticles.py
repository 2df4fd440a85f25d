"""Ground truth of a colloidal CeO2 nanoparticle synthesis: size, size distribution and shape for SAXS and PDF.

The truth (T = reaction_temperature_c + 273.15 K, t = reaction_time_min, L = ligand_ratio, z = zr_shell_ratio)
--------------------------------------------------------------------------------------------------------------
Ostwald ripening (LSW) from burst nucleation, slowed by the capping ligand::

    R³ = R_n³ + K0 exp(−Ea / (R_gas T)) t / (1 + L / L0)                    (nm³; R_n = 0.8 nm)

The Schulz width of the radius distribution narrows from the broad burst (0.35) towards a ripening value that
ligands narrow further::

    pd = pd_∞ + (0.35 − pd_∞) exp(−t / τ),   pd_∞ = 0.06 + 0.18 / (1 + L/3),   τ = 40 min · exp(−(T_c − 150)/100)

Shape: oleylamine-rich syntheses (L > 4) above 150 °C grow rods by facet-selective capping, with aspect ratio
``1.5 + 0.5 (L − 4)(T_c − 150)/150``; the rod keeps the volume of the sphere of radius R. Otherwise spheres.
A ZrO2 shell of thickness ``4 z`` nm grows on spheres; on rods the Zr precursor nucleates apart as 1 nm ZrO2
clusters instead. Ce3+ sits at the surface: ``ce3_fraction = 0.05 + 0.45 · (1 − ((r − 0.3 nm)/r)³)`` with r the
(sphere or rod) radius, and the fluorite cell expands with it: ``a = 5.411 + 0.12 · ce3_fraction`` Å.

Techniques: SAXS sees the particle populations (CeO2 volume fraction 0.2 % in toluene, X-ray SLDs from the
structures); XRD and PDF see crystalline CeO2 with crystallite size = the sphere diameter or rod diameter (PDF
uses a spherical envelope; the ZrO2 shell is amorphous, 60 % as dense as the crystal, and left out of XRD and
PDF); XAS (Ce L3) sees the Ce3+
fraction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from pymatgen.core import Structure

from sim_lab import phases
from sim_lab.saxs import CoreShellSphere, Cylinder, ParticlesInSample, Sphere, xray_sld
from sim_lab.scenarios.base import Parameter, SampleTruth, Scenario
from sim_lab.xrd import PhaseInSample

__all__ = ["CeriaNanoparticles"]

GAS_CONSTANT_KJ_PER_MOL_K = 8.314462618e-3
TOLUENE_SLD = 7.99  # X-ray SLD of toluene, 1e-6/Å²
AMORPHOUS_ZIRCONIA_DENSITY_RATIO = 0.6  # hydrous amorphous ZrO2 shell vs crystalline cubic ZrO2


@dataclass(frozen=True)
class CeriaNanoparticles(Scenario):
    """CeO2 nanocrystals from a hot-injection synthesis; the fields are the constants of the truth."""

    name: ClassVar[str] = "ceria_nanoparticles"
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("reaction_temperature_c", 150.0, 300.0, "degC"),
        Parameter("reaction_time_min", 5.0, 120.0, "min"),
        Parameter("ligand_ratio", 0.5, 10.0, "mol oleylamine / mol Ce"),
        Parameter("zr_shell_ratio", 0.0, 0.5, "mol Zr / mol Ce"),
    )
    techniques: ClassVar[tuple[str, ...]] = ("saxs", "pdf", "xas", "diffractometer")

    nucleus_radius_nm: float = 0.8
    ripening_prefactor_nm3_per_min: float = 2.1e8
    ripening_energy_kj_mol: float = 80.0
    ligand_scale: float = 2.0
    rod_threshold_ligand_ratio: float = 4.0
    shell_nm_per_ratio: float = 4.0
    ceria_volume_fraction: float = 0.002

    def synthesis_duration_s(self, conditions: Mapping[str, float]) -> float:
        """Heating the flask at 5 °C/min from 25 °C, the reaction, and 30 min of washing."""
        heat_s = (float(conditions["reaction_temperature_c"]) - 25.0) / 5.0 * 60.0
        return heat_s + 60.0 * float(conditions["reaction_time_min"]) + 1800.0

    def _shape(self, c: dict[str, float]) -> tuple[float, float, float, float]:
        """Radius (nm), Schulz pd, aspect ratio, shell thickness (nm)."""
        temperature_c, time_min, ligand = c["reaction_temperature_c"], c["reaction_time_min"], c["ligand_ratio"]
        rate = (
            self.ripening_prefactor_nm3_per_min
            * math.exp(-self.ripening_energy_kj_mol / (GAS_CONSTANT_KJ_PER_MOL_K * (temperature_c + 273.15)))
            / (1.0 + ligand / self.ligand_scale)
        )
        sphere_radius = (self.nucleus_radius_nm**3 + rate * time_min) ** (1.0 / 3.0)
        pd_final = 0.06 + 0.18 / (1.0 + ligand / 3.0)
        tau_min = 40.0 * math.exp(-(temperature_c - 150.0) / 100.0)
        pd = pd_final + (0.35 - pd_final) * math.exp(-time_min / tau_min)
        if ligand > self.rod_threshold_ligand_ratio and temperature_c > 150.0:
            aspect = 1.5 + 0.5 * (ligand - self.rod_threshold_ligand_ratio) * (temperature_c - 150.0) / 150.0
            radius = sphere_radius * (2.0 / (3.0 * aspect)) ** (1.0 / 3.0)  # π r² · 2 r A = 4/3 π R³
            return radius, pd, aspect, 0.0
        return sphere_radius, pd, 1.0, self.shell_nm_per_ratio * c["zr_shell_ratio"]

    def quantities(self, conditions: Mapping[str, float]) -> dict[str, float]:
        c = self.validate(conditions)
        radius, pd, aspect, shell = self._shape(c)
        ce3 = 0.05 + 0.45 * (1.0 - (max(radius - 0.3, 0.0) / radius) ** 3)
        return {
            "particle_radius_nm": radius,
            "radius_pd": pd,
            "aspect_ratio": aspect,
            "shell_thickness_nm": shell,
            "ceria_crystallite_size_nm": 2.0 * radius,
            "ceria_a_angstrom": 5.411 + 0.12 * ce3,
            "ce3_fraction": ce3,
        }

    def truth(self, conditions: Mapping[str, float]) -> SampleTruth:
        c = self.validate(conditions)
        q = self.quantities(c)
        ceria = phases.fluorite(q["ceria_a_angstrom"], "Ce")
        ceria_sld = xray_sld(ceria)
        zirconia_sld = AMORPHOUS_ZIRCONIA_DENSITY_RATIO * xray_sld(phases.fluorite(5.09, "Zr"))
        radius_a, pd = 10.0 * q["particle_radius_nm"], q["radius_pd"]
        particles: list[ParticlesInSample] = []
        if q["aspect_ratio"] > 1.0:
            rods = Cylinder(radius_a, 2.0 * radius_a * q["aspect_ratio"], pd, pd, ceria_sld, TOLUENE_SLD)
            particles.append(ParticlesInSample(rods, self.ceria_volume_fraction))
            if c["zr_shell_ratio"] > 0:
                clusters = Sphere(10.0, 0.25, zirconia_sld, TOLUENE_SLD)
                zr_volume = self.ceria_volume_fraction * c["zr_shell_ratio"] * (21.2 / 24.0)  # molar volumes
                particles.append(ParticlesInSample(clusters, zr_volume))
        elif q["shell_thickness_nm"] > 0:
            shell_a = 10.0 * q["shell_thickness_nm"]
            core_shell = CoreShellSphere(radius_a, shell_a, pd, ceria_sld, zirconia_sld, TOLUENE_SLD)
            outer_ratio = ((radius_a + shell_a) / radius_a) ** 3
            particles.append(ParticlesInSample(core_shell, self.ceria_volume_fraction * outer_ratio))
        else:
            particles.append(
                ParticlesInSample(Sphere(radius_a, pd, ceria_sld, TOLUENE_SLD), self.ceria_volume_fraction)
            )
        strain = 2e-3 * min(1.0, 1.0 / q["ceria_crystallite_size_nm"])
        crystal = PhaseInSample("ceria", ceria, 1.0, q["ceria_crystallite_size_nm"], strain)
        ce3 = q["ce3_fraction"]
        return SampleTruth(
            phases=[crystal],
            quantities=q,
            particles=particles,
            oxidation_states={"Ce_L3": {"Ce3+": ce3, "Ce4+": 1.0 - ce3}},
        )

    def candidate_phases(self) -> dict[str, Structure]:
        return {"ceria": phases.fluorite(5.411, "Ce")}
