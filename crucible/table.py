"""The experiments of a campaign as one table: one row per experiment, its conditions, every quantity its analyses
found with its standard deviation, its fate and who proposed it, with the units of every column that has one.

Columns, in order (``experiment``, the experiment's number, is the index):

- ``experiment_id``, ``sample_id``;
- one column per condition (the campaign's parameters, and ``scan`` when the planner chose how to measure);
- ``<step>.<quantity>`` and ``<step>.<quantity>_std`` for every quantity the workflow's analyses report (NaN
  until analysed, or where the analysis could not determine it), then any further quantity an agent reported;
- ``feasible`` (analysed and within every outcome constraint), ``status``, ``failure_reason``, ``marked_bad`` and
  ``marked_bad_reason`` (an operator's verdict: the planner forgets the experiment);
- ``strategy`` (``sobol``, ``qLogNEI``, ...), ``model_made`` and ``acquisition_value`` of its proposal;
- ``<step>_instrument`` for every workflow step;
- ``planned_at``, ``<step>_done_at`` (when the step's result was recorded) and ``finished_at`` (analysed, failed
  or rejected), as UTC timestamps.

Units go in ``frame.attrs["units"]`` (column -> unit) for the columns whose unit is known: the parameters' and the
quantities' (a quantity's ``_std`` has its unit).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.outcomes import is_feasible
from orchestrator.spec import SCAN_KEY, CampaignSpec
from orchestrator.store import ExperimentRecord, ExperimentStatus, ProposalRecord, StepAnalysisRecord, StepResultRecord

__all__ = ["STD_SUFFIX", "condition_names", "experiments_frame", "quantity_names", "units"]

#: A quantity's standard deviation is the column named after it with this suffix.
STD_SUFFIX = "_std"

#: Text columns: pandas' string dtype (missing values NaN), so an all-empty column stays text in every format.
_TEXT = "str"


def condition_names(spec: CampaignSpec, experiments: Sequence[ExperimentRecord] = ()) -> list[str]:
    """The condition columns: the parameters in the campaign file's order, the chosen scan if the planner chooses
    one, then any other key an experiment's conditions hold (recorded under an earlier campaign file)."""
    names = [p.name for p in spec.parameters]
    if spec.measurement.scans is not None:
        names.append(SCAN_KEY)
    for experiment in experiments:
        names += [key for key in experiment.conditions if key not in names]
    return names


def quantity_names(spec: CampaignSpec, found: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """The quantity columns (``step.quantity``): those the workflow's analyses report, then any further one
    found in ``found`` (each an experiment's quantities)."""
    names = list(spec.quantities())
    for quantities in found:
        names += [key for key in quantities if key not in names]
    return names


def _measured(
    experiment: ExperimentRecord, analyses: Mapping[str, StepAnalysisRecord]
) -> dict[str, dict[str, float]]:
    """Every quantity recorded for an experiment, as ``step.quantity -> {"value", "std"}``: its steps' analyses,
    else (an experiment recorded before workflows were data) its outcomes."""
    found = {f"{step}.{name}": m for step, record in analyses.items() for name, m in record.quantities.items()}
    return found or dict(experiment.outcomes)


def _utc(moment: datetime | None) -> pd.Timestamp:
    """A recorded time as a UTC timestamp (the store writes UTC; SQLite gives it back without a zone)."""
    if moment is None:
        return pd.NaT
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def experiments_frame(
    spec: CampaignSpec,
    experiments: Sequence[ExperimentRecord],
    proposals: Mapping[str, ProposalRecord],
    step_results: Mapping[str, Sequence[StepResultRecord]],
    step_analyses: Mapping[str, Mapping[str, StepAnalysisRecord]],
) -> pd.DataFrame:
    """The campaign's experiments as a table (see the module's docstring for its columns).

    Args:
        spec: the campaign file the experiments were recorded under.
        experiments: the campaign's experiments, in order.
        proposals: each experiment's proposal, by experiment id.
        step_results: what each experiment's steps returned, by experiment id.
        step_analyses: each experiment's analyses by step name, by experiment id.
    """
    measured = {e.id: _measured(e, step_analyses.get(e.id, {})) for e in experiments}
    conditions = condition_names(spec, experiments)
    quantities = quantity_names(spec, list(measured.values()))
    steps = [step.name for step in spec.steps()]
    rows: list[dict[str, Any]] = []
    for experiment in experiments:
        row: dict[str, Any] = {"experiment": experiment.index, "experiment_id": experiment.id}
        row["sample_id"] = experiment.sample_id
        recorded = experiment.conditions
        row |= {name: recorded.get(name) for name in conditions}
        found = measured[experiment.id]
        for name in quantities:
            row[name] = _number(found.get(name, {}).get("value"))
            row[name + STD_SUFFIX] = _number(found.get(name, {}).get("std"))
        analysed = experiment.status == ExperimentStatus.ANALYSED
        row["feasible"] = analysed and is_feasible(spec, experiment.outcomes)
        row["status"] = experiment.status
        row["failure_reason"] = experiment.failure_reason
        row["marked_bad"] = experiment.excluded_reason is not None
        row["marked_bad_reason"] = experiment.excluded_reason
        proposal = proposals.get(experiment.id)
        row["strategy"] = proposal.strategy if proposal else None
        row["model_made"] = bool(proposal.model_made) if proposal else False
        row["acquisition_value"] = _number(proposal.acquisition_value if proposal else None)
        results = {r.step: r for r in step_results.get(experiment.id, ())}
        for step in steps:
            row[f"{step}_instrument"] = results[step].instrument if step in results else None
        row["planned_at"] = _utc(experiment.created_at)
        for step in steps:
            row[f"{step}_done_at"] = _utc(results[step].created_at if step in results else None)
        finished = experiment.status in ExperimentStatus.TERMINAL
        row["finished_at"] = _utc(experiment.updated_at if finished else None)
        rows.append(row)
    columns = ["experiment", "experiment_id", "sample_id", *conditions]
    columns += [c for name in quantities for c in (name, name + STD_SUFFIX)]
    columns += ["feasible", "status", "failure_reason", "marked_bad", "marked_bad_reason"]
    columns += ["strategy", "model_made", "acquisition_value", *(f"{step}_instrument" for step in steps)]
    columns += ["planned_at", *(f"{step}_done_at" for step in steps), "finished_at"]
    frame = pd.DataFrame(rows, columns=columns)
    text = ["experiment_id", "sample_id", "status", "failure_reason", "marked_bad_reason", "strategy"]
    text += [f"{step}_instrument" for step in steps]
    frame = frame.astype({name: _TEXT for name in text} | _condition_types(spec, frame, conditions))
    numbers = [*quantities, *(q + STD_SUFFIX for q in quantities), "acquisition_value"]
    frame = frame.astype(dict.fromkeys(numbers, "float64"))
    frame = frame.astype({"feasible": bool, "marked_bad": bool, "model_made": bool, "experiment": "int64"})
    for name in ("planned_at", *(f"{step}_done_at" for step in steps), "finished_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True).dt.as_unit("us")
    frame = frame.set_index("experiment")
    frame.attrs["units"] = units(spec, conditions, quantities)
    return frame


def _condition_types(spec: CampaignSpec, frame: pd.DataFrame, conditions: Sequence[str]) -> dict[str, str]:
    """The dtype of each condition column: a categorical parameter's choices (and the scan) are text, a continuous
    parameter's values floats, an integer parameter's integers (floats where some experiment lacks one); any other
    recorded key text unless every value is a number."""
    kinds = {p.name: p.kind for p in spec.parameters}
    types = {}
    for name in conditions:
        kind = kinds.get(name)
        if kind == "continuous":
            types[name] = "float64"
        elif kind == "integer":
            types[name] = "float64" if frame[name].isna().any() else "int64"
        elif kind == "categorical" or name == SCAN_KEY or not _numeric(frame[name]):
            types[name] = _TEXT
        else:
            types[name] = "float64"
    return types


def _numeric(column: pd.Series) -> bool:
    """Whether a column holds numbers only."""
    present = column.dropna()
    return all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in present)


def units(spec: CampaignSpec, conditions: Sequence[str], quantities: Sequence[str]) -> dict[str, str]:
    """Column -> unit, for the condition and quantity columns whose unit the campaign file or the analysis gives."""
    known: dict[str, str] = {p.name: p.unit for p in spec.parameters if p.name in conditions and p.unit}
    for name, quantity in spec.quantities().items():
        if name in quantities and quantity.unit:
            known[name] = known[name + STD_SUFFIX] = quantity.unit
    return known
