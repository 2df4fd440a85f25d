"""Crucible's results as a scientist takes them away: open a recorded campaign, read it as tables and patterns.

    >>> import crucible
    >>> results = crucible.open_campaign("tio2-anneal", runs_dir="runs/demo")
    >>> table = results.experiments()          # one row per experiment, units in table.attrs["units"]
    >>> pattern = results.reading(3)           # the Diffractogram experiment 3 measured
    >>> results.predict([{"anneal_temperature_c": 700, "anneal_time_h": 6, "dopant_fraction": 0.05}])

Opening a campaign reads its database only: no instrument, lab or server starts. ``import crucible`` is cheap;
pandas, torch and the planner load when a campaign is opened.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crucible.export import export_campaign, read_experiments
    from crucible.results import CampaignNotFound, CampaignResults, ResultsError, open_campaign

__all__ = [
    "CampaignNotFound",
    "CampaignResults",
    "ResultsError",
    "__version__",
    "export_campaign",
    "open_campaign",
    "read_experiments",
]

try:
    __version__ = version("crucible-lab")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

#: Public names and the module each lives in, imported on first use.
_LAZY = {
    "CampaignNotFound": "crucible.results",
    "CampaignResults": "crucible.results",
    "ResultsError": "crucible.results",
    "open_campaign": "crucible.results",
    "export_campaign": "crucible.export",
    "read_experiments": "crucible.export",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'crucible' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
