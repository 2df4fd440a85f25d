"""Analysis agents by name: what a workflow step's ``analysis: {agent: NAME, options: {...}}`` becomes.

A registered analysis is an :class:`AnalysisKind`: the pydantic model its ``options`` must satisfy, the reading
kind it takes, the quantities it reports for given options (names, units, whether each is a share in [0, 1]), a
check of what the options name outside the campaign file (CIF files, a trained model), and how to build the agent.
Crucible registers its own in :mod:`agents.builtin_analyses` (``xrd``, ``saxs-shape``, ``pdf-size``);
a lab adds its technique without editing Crucible, either in code::

    register_analysis(AnalysisKind(name="uv-vis-peak", reading_kind="spectrum", options=PeakOptions,
                                   quantities=peak_quantities, build=PeakAgent))

or by an entry point in the group ``crucible.analyses`` of its own package (the entry point names an
:class:`AnalysisKind`). This module imports nothing heavy: the agents' own modules load when they are built.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

__all__ = [
    "ENTRY_POINT_GROUP",
    "AnalysisKind",
    "Quantity",
    "StepAgent",
    "StepReport",
    "analysis_kind",
    "analysis_names",
    "register_analysis",
]

#: The entry-point group where other packages register their analyses.
ENTRY_POINT_GROUP = "crucible.analyses"


@dataclass(frozen=True)
class Quantity:
    """One quantity an analysis reports: its name (the unit in the name, e.g. ``radius_nm``), its unit, and whether
    it is a share in [0, 1] (a weight fraction, a probability), which the planner models on a logit scale."""

    name: str
    unit: str = ""
    share: bool = False


class StepReport(Protocol):
    """What an agent concluded about one reading: ``as_dict()`` gives ``{name: {"value": v, "std": s}}``."""

    agent: str
    warnings: tuple[str, ...]

    def as_dict(self) -> dict[str, dict[str, float]]: ...


class StepAgent(Protocol):
    """An analysis agent as a workflow step uses it: one reading in, quantities with standard deviations out."""

    name: str

    def analyse(self, reading: Any) -> StepReport: ...


@dataclass(frozen=True)
class AnalysisKind:
    """A named analysis a workflow step can use.

    Attributes:
        name: the name campaign files give (``agent: NAME``).
        reading_kind: the kind of reading it takes (``Reading.kind``: ``diffractogram``, ``scattering_curve``, ...).
        options: the pydantic model of its ``options`` (unknown keys should be refused).
        quantities: the quantities it reports for validated options.
        build: the agent for validated options; raise ``ValueError`` (or ``FileNotFoundError``) naming the problem.
        check_resources: what is wrong with what validated options name outside the file (None: nothing).
        description: one line for listings.
        view: draws a reading with what the agent found as a PNG: ``view(reading, report, title, path)`` returns
            the path (or None when it has nothing to draw).
    """

    name: str
    reading_kind: str
    options: type[BaseModel]
    quantities: Callable[[Any], list[Quantity]]
    build: Callable[[Any], StepAgent]
    check_resources: Callable[[Any], str | None] | None = None
    description: str = ""
    view: Callable[[Any, Any, str, Path], Path | None] | None = None


_registry: dict[str, AnalysisKind] = {}
_broken: dict[str, str] = {}  # entry points that failed to load: name -> why
_loaded = False
_lock = threading.Lock()


def register_analysis(kind: AnalysisKind, *, replace: bool = False) -> AnalysisKind:
    """Make ``kind`` available to campaign files under ``kind.name``; refuses a name taken unless ``replace``."""
    _load()
    with _lock:
        if kind.name in _registry and not replace and _registry[kind.name] is not kind:
            raise ValueError(f"an analysis named {kind.name!r} is already registered")
        _registry[kind.name] = kind
    return kind


def analysis_kind(name: str) -> AnalysisKind:
    """The analysis registered as ``name``.

    Raises:
        KeyError: naming the registered analyses.
    """
    _load()
    if name not in _registry and name in _broken:
        raise KeyError(f"analysis agent {name!r}: {_broken[name]}")
    if name not in _registry:
        raise KeyError(f"no analysis agent named {name!r}; registered: {', '.join(analysis_names())}")
    return _registry[name]


def analysis_names() -> list[str]:
    """Every registered analysis, sorted."""
    _load()
    return sorted(_registry)


def _load() -> None:
    """Register the built-in analyses and those of installed packages' entry points, once."""
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        from agents import builtin_analyses

        for kind in builtin_analyses.BUILTIN:
            _registry.setdefault(kind.name, kind)
        for point in entry_points(group=ENTRY_POINT_GROUP):
            try:
                kind = point.load()
            except Exception as error:  # a broken plug-in must not hide the others; named when it is asked for
                _broken[point.name] = f"entry point {point.value!r} cannot be loaded ({type(error).__name__}: {error})"
                continue
            if isinstance(kind, AnalysisKind):
                _registry.setdefault(point.name, kind)
        _loaded = True



def validated_options(kind: AnalysisKind, options: Mapping[str, Any]) -> BaseModel:
    """``options`` validated by ``kind``'s model (raises pydantic's ``ValidationError``)."""
    return kind.options.model_validate(dict(options))
