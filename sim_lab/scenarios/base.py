"""The contract every simulated scenario honours: its parameters, hidden ground truth and candidate phases."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from pymatgen.core import Structure

from sim_lab.saxs import ParticlesInSample
from sim_lab.xrd import PhaseInSample

__all__ = ["Parameter", "SampleTruth", "Scenario", "furnace_duration_s"]

ROOM_TEMPERATURE_C = 25.0


def furnace_duration_s(temperature_c: float, dwell_h: float, ramp_c_per_min: float = 10.0) -> float:
    """Furnace time in seconds: ramp up from room temperature, dwell, ramp down at the same rate."""
    ramp_s = max(temperature_c - ROOM_TEMPERATURE_C, 0.0) / ramp_c_per_min * 60.0
    return 2.0 * ramp_s + dwell_h * 3600.0


@dataclass(frozen=True)
class Parameter:
    """One synthesis condition a campaign may vary, with its inclusive bounds and unit."""

    name: str
    low: float
    high: float
    unit: str

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"parameter {self.name}: low ({self.low}) must be below high ({self.high})")

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "low": self.low, "high": self.high, "unit": self.unit}


@dataclass(frozen=True)
class SampleTruth:
    """What a sample really is, as each technique sees it, and the quantities analysis should recover.

    Attributes:
        phases: crystalline phases (powder XRD, PDF).
        quantities: the named true quantities (objectives and constraints refer to these).
        particles: particle populations in suspension (SAXS); empty for powders.
        oxidation_states: edge name (``"Ce_L3"``) -> oxidation-state fractions (XAS); empty if no absorber.
    """

    phases: list[PhaseInSample]
    quantities: dict[str, float] = field(default_factory=dict)
    particles: list[ParticlesInSample] = field(default_factory=list)
    oxidation_states: dict[str, dict[str, float]] = field(default_factory=dict)


class Scenario(ABC):
    """A simulated chemistry: maps synthesis conditions to the hidden truth of the sample they make.

    Subclasses are frozen dataclasses whose fields are the (documented) constants of the ground truth, so
    ``repr(scenario)`` identifies the truth completely.
    """

    name: ClassVar[str]
    parameters: ClassVar[tuple[Parameter, ...]]
    techniques: ClassVar[tuple[str, ...]] = ("diffractometer",)
    """Instrument kinds whose measurements carry information about this scenario's truth."""

    def validate(self, conditions: Mapping[str, float]) -> dict[str, float]:
        """Check names and bounds; return conditions as floats, or raise ValueError naming the parameter."""
        expected = {p.name for p in self.parameters}
        unknown = sorted(set(conditions) - expected)
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {unknown}; expected {sorted(expected)}")
        checked: dict[str, float] = {}
        for p in self.parameters:
            if p.name not in conditions:
                raise ValueError(f"{self.name}: missing parameter {p.name!r} ({p.unit}, {p.low}..{p.high})")
            try:
                value = float(conditions[p.name])
            except (TypeError, ValueError):
                raise ValueError(
                    f"{self.name}: parameter {p.name!r} must be a number, got {conditions[p.name]!r}"
                ) from None
            if not math.isfinite(value) or not p.low <= value <= p.high:
                raise ValueError(
                    f"{self.name}: parameter {p.name!r} = {value} {p.unit} is outside [{p.low}, {p.high}] {p.unit}"
                )
            checked[p.name] = value
        return checked

    def synthesis_duration_s(self, conditions: Mapping[str, float]) -> float:
        """Realistic time to make one sample at ``conditions``, in seconds (default one hour)."""
        return 3600.0

    @abstractmethod
    def quantities(self, conditions: Mapping[str, float]) -> dict[str, float]:
        """The true named quantities of the sample made at ``conditions`` (fast: no structures built)."""

    @abstractmethod
    def truth(self, conditions: Mapping[str, float]) -> SampleTruth:
        """The full truth of the sample made at ``conditions``: phases for the instruments plus quantities."""

    @abstractmethod
    def candidate_phases(self) -> dict[str, Structure]:
        """Reference structures an analyst would search for (undoped, nominal lattices), by phase name."""
