"""Simulated powder-XRD data sets for training and benchmarking analysis models, drawn from a scenario's phases.

Two kinds of draw share one prior over samples (:class:`SamplePrior`: which phases are present and in what weight
fractions, lattice parameters around the scenario's nominal cells, crystallite sizes, microstrains) and one
description of the instrument's nuisances (:class:`Nuisance`: background, counting time, zero shift):

- :func:`iter_components` yields, per sample, each phase's unit-weight signal (the forward model of
  :mod:`sim_lab.xrd` with ``weight_fraction = 1``, at the sample's zero shift) and the truth. A pattern is then any
  ``flux · t · (Σ_p w_p · signal_p + Σ_k c_k T_k)`` followed by Poisson noise, which lets a trainer redraw fractions,
  background and noise at every epoch for free; the forward model is linear in them.
- :func:`measured_set` returns complete :class:`~instruments.readings.Diffractogram` s from
  :meth:`sim_lab.xrd.PowderDiffractometer.measure`, as an instrument would, for held-out evaluation (optionally
  with a phase the analysis does not know, for open-set tests).

Also: structures outside the TiO2 scenario (brookite, monoclinic ZrO2, four common decoys) and a simulated ternary
composition spread (:func:`ternary_spread`) for phase identification and NMF demixing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from instruments.readings import Diffractogram
from sim_lab.scenarios import get_scenario
from sim_lab.xrd import PhaseInSample, PowderDiffractometer

__all__ = [
    "DEFAULT_DIFFRACTOMETER",
    "MeasuredSample",
    "Nuisance",
    "PhaseComponents",
    "SamplePrior",
    "SpreadSample",
    "baddeleyite",
    "brookite",
    "decoy_phases",
    "free_lattice_names",
    "iter_components",
    "measured_set",
    "scenario_phases",
    "ternary_spread",
    "with_lattice",
]


DEFAULT_DIFFRACTOMETER = PowderDiffractometer()


@dataclass(frozen=True)
class SamplePrior:
    """The distribution samples are drawn from.

    Attributes:
        pure_probability: probability that a sample holds a single phase (chosen uniformly); otherwise every
            phase is present with weight fractions uniform on the simplex (Dirichlet(1, ..., 1)).
        lattice_relative: (low, high) relative change of each free lattice parameter from the nominal cell,
            drawn uniformly and independently (the scenario's Vegard range sits inside).
        size_nm: (low, high) crystallite size in nm, drawn log-uniformly per phase.
        microstrain: (low, high) dimensionless microstrain, drawn uniformly per phase.
    """

    pure_probability: float = 0.3
    lattice_relative: tuple[float, float] = (-0.003, 0.007)
    size_nm: tuple[float, float] = (5.0, 200.0)
    microstrain: tuple[float, float] = (0.0, 1.5e-3)


@dataclass(frozen=True)
class Nuisance:
    """What varies between measurements but is not a property of the sample.

    Attributes:
        counting_time_s: (low, high) counting time per step in s, drawn log-uniformly (sets the Poisson noise).
        background_level: (low, high) of the constant Chebyshev coefficient c0 (model units; the instrument's
            default is 1.5), drawn uniformly.
        background_shape: per higher Chebyshev order k = 1, 2, ..., the bound b_k of c_k / c0 ~ U(−b_k, b_k).
        zero_shift_deg: (low, high) zero shift of the 2θ scale in degrees, drawn uniformly.
    """

    counting_time_s: tuple[float, float] = (0.3, 3.0)
    background_level: tuple[float, float] = (0.5, 3.0)
    background_shape: tuple[float, ...] = (0.4, 0.25, 0.1)
    zero_shift_deg: tuple[float, float] = (-0.05, 0.05)

    @classmethod
    def shifted(cls) -> Nuisance:
        """Noise, background and zero shift drawn wider than the defaults (which the shipped network was trained on):
        counting time 0.1–10 s (trained 0.3–3 s), background level 0.2–8 (0.5–3) with two more Chebyshev orders and
        larger shape terms, zero shift ±0.15° (±0.05°)."""
        return cls(
            counting_time_s=(0.1, 10.0),
            background_level=(0.2, 8.0),
            background_shape=(0.45, 0.3, 0.12, 0.06, 0.04),
            zero_shift_deg=(-0.15, 0.15),
        )

    def draw_background(self, rng: np.random.Generator) -> tuple[float, ...]:
        """Chebyshev coefficients of one background; positive over the scan since Σ b_k < 1."""
        if sum(self.background_shape) >= 1.0:
            raise ValueError("background_shape bounds must sum below 1 to keep the background positive")
        level = rng.uniform(*self.background_level)
        return (level, *(level * rng.uniform(-b, b) for b in self.background_shape))

    def draw_counting_time_s(self, rng: np.random.Generator) -> float:
        low, high = self.counting_time_s
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def free_lattice_names(structure: Structure) -> list[str]:
    """The lattice parameters free in the structure's crystal system (``["a", "c"]`` for tetragonal)."""
    system = SpacegroupAnalyzer(structure, symprec=0.01).get_crystal_system()
    if system == "cubic":
        return ["a"]
    if system in ("tetragonal", "hexagonal", "trigonal"):
        return ["a", "c"]
    if system == "orthorhombic":
        return ["a", "b", "c"]
    return []  # monoclinic and triclinic cells are kept at their reference


def with_lattice(structure: Structure, values: dict[str, float]) -> Structure:
    """A copy of ``structure`` with the lattice parameters ``values`` (Å; tied axes follow a), same fractional sites."""
    lattice = structure.lattice
    a = values.get("a", lattice.a)
    tied_b = math.isclose(lattice.a, lattice.b, rel_tol=1e-6)
    tied_c = math.isclose(lattice.a, lattice.c, rel_tol=1e-6)
    b = values.get("b", a if tied_b else lattice.b)
    c = values.get("c", a if tied_c else lattice.c)
    new = Lattice.from_parameters(a, b, c, lattice.alpha, lattice.beta, lattice.gamma)
    return Structure(new, structure.species, structure.frac_coords)


def scenario_phases(scenario: str) -> dict[str, Structure]:
    """The scenario's candidate phases (nominal cells), by name, in the scenario's order."""
    return get_scenario(scenario).candidate_phases()


@dataclass(frozen=True)
class PhaseComponents:
    """One drawn sample, as separable components on the instrument's grid.

    Attributes:
        unit_signals: `P x n` signal of each phase at unit weight fraction (model units, before flux and time),
            at this sample's lattices, sizes, strains and zero shift.
        weight_fraction: `P` the weight fractions drawn for this sample (a trainer may redraw them).
        lattice_angstrom: per phase, the free lattice parameters in Å.
        crystallite_size_nm: `P` sizes in nm; microstrain: `P` microstrains.
        zero_shift_deg: the zero shift baked into ``unit_signals``.
    """

    unit_signals: NDArray[np.float64]
    weight_fraction: NDArray[np.float64]
    lattice_angstrom: list[dict[str, float]]
    crystallite_size_nm: NDArray[np.float64]
    microstrain: NDArray[np.float64]
    zero_shift_deg: float


def _draw_fractions(n_phases: int, prior: SamplePrior, rng: np.random.Generator) -> NDArray[np.float64]:
    if n_phases == 1:
        return np.ones(1)
    if rng.uniform() < prior.pure_probability:
        fractions = np.zeros(n_phases)
        fractions[rng.integers(n_phases)] = 1.0
        return fractions
    return rng.dirichlet(np.ones(n_phases))


def _draw_phases(
    nominal: dict[str, Structure], names: dict[str, list[str]], prior: SamplePrior, rng: np.random.Generator
) -> list[PhaseInSample]:
    fractions = _draw_fractions(len(nominal), prior, rng)
    drawn = []
    for (name, structure), fraction in zip(nominal.items(), fractions, strict=True):
        lattice = structure.lattice
        values = {axis: getattr(lattice, axis) * (1.0 + rng.uniform(*prior.lattice_relative)) for axis in names[name]}
        size = math.exp(rng.uniform(math.log(prior.size_nm[0]), math.log(prior.size_nm[1])))
        drawn.append(
            PhaseInSample(
                name, with_lattice(structure, values), float(fraction), size, float(rng.uniform(*prior.microstrain))
            )
        )
    return drawn


def iter_components(
    scenario: str,
    n: int,
    seed: int,
    prior: SamplePrior = SamplePrior(),
    nuisance: Nuisance = Nuisance(),
    diffractometer: PowderDiffractometer = DEFAULT_DIFFRACTOMETER,
) -> Iterator[PhaseComponents]:
    """Draw ``n`` samples of the scenario's phases; yield each as unit-weight phase signals plus its truth.

    About 20 ms per sample (two new pymatgen reflection lists per sample dominate).
    """
    rng = np.random.default_rng(seed)
    nominal = scenario_phases(scenario)
    names = {name: free_lattice_names(structure) for name, structure in nominal.items()}
    for _ in range(n):
        phases = _draw_phases(nominal, names, prior, rng)
        zero = float(rng.uniform(*nuisance.zero_shift_deg))
        instrument = replace(diffractometer, zero_shift_deg=zero)
        signals = np.stack([instrument.phase_signal(replace(p, weight_fraction=1.0)) for p in phases])
        yield PhaseComponents(
            unit_signals=signals,
            weight_fraction=np.array([p.weight_fraction for p in phases]),
            lattice_angstrom=[{axis: getattr(p.structure.lattice, axis) for axis in names[p.name]} for p in phases],
            crystallite_size_nm=np.array([p.crystallite_size_nm for p in phases]),
            microstrain=np.array([p.microstrain for p in phases]),
            zero_shift_deg=zero,
        )


@dataclass(frozen=True)
class MeasuredSample:
    """A held-out pattern and the truth behind it.

    Attributes:
        pattern: the measured diffractogram.
        quantities: truth by the names analysis reports: ``<phase>_fraction``, ``<phase>_crystallite_size_nm``,
            ``<phase>_<axis>_angstrom``, plus ``zero_shift_deg``.
    """

    pattern: Diffractogram
    quantities: dict[str, float]


def measured_set(
    scenario: str,
    n: int,
    seed: int,
    prior: SamplePrior = SamplePrior(),
    nuisance: Nuisance = Nuisance(),
    diffractometer: PowderDiffractometer = DEFAULT_DIFFRACTOMETER,
    unknown: dict[str, Structure] | None = None,
    unknown_fraction: tuple[float, float] = (0.1, 0.4),
) -> list[MeasuredSample]:
    """``n`` patterns measured end to end by :meth:`PowderDiffractometer.measure`, with their truth.

    With ``unknown`` (``{name: structure}``), every sample also holds one of these phases (chosen in turn) at a weight
    fraction drawn uniformly from ``unknown_fraction`` (the scenario's phases share the rest); its truth then has
    ``unknown_fraction`` and the pattern's ``sample_id`` ends in ``+<name>``.
    """
    rng = np.random.default_rng(seed)
    nominal = scenario_phases(scenario)
    names = {name: free_lattice_names(structure) for name, structure in nominal.items()}
    extra = list((unknown or {}).items())
    out = []
    for i in range(n):
        phases = _draw_phases(nominal, names, prior, rng)
        if extra:
            name, structure = extra[i % len(extra)]
            share = float(rng.uniform(*unknown_fraction))
            phases = [replace(p, weight_fraction=p.weight_fraction * (1.0 - share)) for p in phases]
            size = math.exp(rng.uniform(math.log(prior.size_nm[0]), math.log(prior.size_nm[1])))
            phases.append(PhaseInSample(name, structure, share, size, float(rng.uniform(*prior.microstrain))))
        zero = float(rng.uniform(*nuisance.zero_shift_deg))
        instrument = replace(diffractometer, zero_shift_deg=zero, background_chebyshev=nuisance.draw_background(rng))
        pattern = instrument.measure(
            [p for p in phases if p.weight_fraction > 0],
            nuisance.draw_counting_time_s(rng),
            rng,
            sample_id=f"{scenario}-{seed}-{i}" + (f"+{extra[i % len(extra)][0]}" if extra else ""),
        )
        truth: dict[str, float] = {"zero_shift_deg": zero}
        if extra:
            truth["unknown_fraction"] = phases[-1].weight_fraction
            phases = phases[:-1]
        for p in phases:
            truth[f"{p.name}_fraction"] = p.weight_fraction
            truth[f"{p.name}_crystallite_size_nm"] = p.crystallite_size_nm
            for axis in names[p.name]:
                truth[f"{p.name}_{axis}_angstrom"] = float(getattr(p.structure.lattice, axis))
        out.append(MeasuredSample(pattern, truth))
    return out


def brookite() -> Structure:
    """Brookite TiO2, Pbca (No. 61), a = 9.184, b = 5.447, c = 5.145 Å (Meagher & Lager, Can. Mineral. 17, 77
    (1979)): Ti, O1, O2 on 8c. A TiO2 polymorph that is *not* in the TiO2 scenario's library."""
    lattice = Lattice.orthorhombic(9.184, 5.447, 5.145)
    return Structure.from_spacegroup(
        61, lattice, ["Ti", "O", "O"], [[0.1289, 0.0972, 0.8628], [0.0101, 0.1486, 0.1824], [0.2304, 0.1130, 0.5371]]
    )


def baddeleyite() -> Structure:
    """Monoclinic ZrO2, P2_1/c (No. 14), a = 5.1505, b = 5.2116, c = 5.3173 Å, β = 99.23° (Howard et al., Acta
    Cryst. B44, 116 (1988)): Zr, O1, O2 on 4e. What Zr beyond its solubility in TiO2 could segregate as."""
    lattice = Lattice.monoclinic(5.1505, 5.2116, 5.3173, 99.23)
    return Structure.from_spacegroup(
        14, lattice, ["Zr", "O", "O"], [[0.2754, 0.0395, 0.2083], [0.0700, 0.3317, 0.3447], [0.4496, 0.7569, 0.4792]]
    )


def decoy_phases() -> dict[str, Structure]:
    """Common phases to pad a search library with: ceria, zincite, silicon and corundum (room-temperature cells)."""
    return {
        "ceria": Structure.from_spacegroup(225, Lattice.cubic(5.411), ["Ce", "O"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
        "zincite": Structure.from_spacegroup(
            186, Lattice.hexagonal(3.2498, 5.2066), ["Zn", "O"], [[1 / 3, 2 / 3, 0.0], [1 / 3, 2 / 3, 0.3819]]
        ),
        "silicon": Structure.from_spacegroup(227, Lattice.cubic(5.4309), ["Si"], [[0.0, 0.0, 0.0]]),
        "corundum": Structure.from_spacegroup(
            167, Lattice.hexagonal(4.7589, 12.991), ["Al", "O"], [[0.0, 0.0, 0.3523], [0.3064, 0.0, 0.25]]
        ),
    }


@dataclass(frozen=True)
class SpreadSample:
    """One sample of a composition spread: its pattern, composition and the true weight fraction of each phase."""

    pattern: Diffractogram
    composition: tuple[float, ...]
    weight_fraction: dict[str, float]

    @property
    def phases_present(self) -> frozenset[str]:
        return frozenset(name for name, w in self.weight_fraction.items() if w > 0)


def ternary_spread(
    phases: dict[str, Structure],
    divisions: int,
    seed: int,
    solubility: float = 0.1,
    crystallite_size_nm: float = 30.0,
    counting_time_s: float = 1.0,
    nuisance: Nuisance = Nuisance(counting_time_s=(1.0, 1.0), zero_shift_deg=(0.0, 0.0)),
    diffractometer: PowderDiffractometer = DEFAULT_DIFFRACTOMETER,
) -> list[SpreadSample]:
    """A simulated ternary composition spread over three phases, on a triangular grid of compositions.

    The phase diagram has three terminal solid solutions and a three-phase triangle between them: a composition
    ``c`` (a point of the simplex, one coordinate per phase) holds phase ``i`` with the weight fraction
    ``λ_i = max((c_i − s) / (1 − 3 s), 0)`` renormalised, the lever rule with tie-lines to the corners of the triangle
    whose vertices sit at ``s`` (= ``solubility``) from the edges. So: one phase where two coordinates are below
    ``s``, two phases where one is, three phases elsewhere, with fractions going continuously to zero at the
    boundaries. Cells are fixed (no Vegard shift), so each phase has one pattern. Every sample has its own
    background drawn from ``nuisance``.

    Args:
        phases: three named structures, one per corner.
        divisions: grid steps per edge; the spread has ``(divisions + 1)(divisions + 2) / 2`` samples.
    """
    if len(phases) != 3:
        raise ValueError(f"a ternary spread needs three phases, got {len(phases)}")
    rng = np.random.default_rng(seed)
    names = list(phases)
    out = []
    for i in range(divisions + 1):
        for j in range(divisions + 1 - i):
            composition = np.array([i, j, divisions - i - j], dtype=float) / divisions
            lever = np.maximum((composition - solubility) / (1.0 - 3.0 * solubility), 0.0)
            fractions = lever / lever.sum()
            sample = [PhaseInSample(name, phases[name], float(w), crystallite_size_nm)
                      for name, w in zip(names, fractions, strict=True) if w > 0]
            instrument = replace(diffractometer, background_chebyshev=nuisance.draw_background(rng),
                                 zero_shift_deg=float(rng.uniform(*nuisance.zero_shift_deg)))
            pattern = instrument.measure(sample, counting_time_s, rng, sample_id=f"spread-{i}-{j}")
            out.append(SpreadSample(pattern, tuple(float(c) for c in composition),
                                    {name: float(w) for name, w in zip(names, fractions, strict=True)}))
    return out
