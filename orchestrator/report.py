"""Campaign reports: a table of experiments (who proposed each, what it gave) and a plot of the best objective so
far versus experiments."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from orchestrator.outcomes import best_so_far, is_feasible, measured, objective_value
from orchestrator.spec import SCAN_KEY, CampaignSpec
from orchestrator.store import CampaignRecord, ExperimentRecord, ExperimentStatus, ProposalRecord

__all__ = [
    "closed_loop_line",
    "experiment_table",
    "plot_best_so_far",
    "proposed_by",
    "state_line",
    "status_text",
]


def _sign(spec: CampaignSpec) -> float:
    return -1.0 if spec.objectives[0].direction == "minimize" else 1.0


def experiment_table(
    spec: CampaignSpec,
    experiments: Sequence[ExperimentRecord],
    proposals: Mapping[str, ProposalRecord] | None = None,
) -> Table:
    """One row per experiment: conditions, objective and constraint outcomes with uncertainties, status, and (given
    ``proposals``) who proposed it: the initial design, or the model with how many results it had seen."""
    objective = spec.objectives[0].name
    table = Table(title=f"campaign {spec.name}")
    table.add_column("#", justify="right")
    for parameter in spec.parameters:
        table.add_column(
            escape(f"{parameter.name}\n[{parameter.unit}]") if parameter.unit else parameter.name, justify="right"
        )
    scans = spec.measurement.scans is not None
    if scans:
        table.add_column(SCAN_KEY)
    table.add_column(objective, justify="right")
    for constraint in spec.constraints:
        table.add_column(f"{constraint.name}\n{constraint.op} {constraint.value:g}", justify="right")
    if proposals is not None:
        table.add_column("proposed by")
    table.add_column("status")
    for experiment in experiments:
        outcomes = experiment.outcomes
        cells = [str(experiment.index)]
        cells += [_format(experiment.conditions.get(p.name)) for p in spec.parameters]
        if scans:
            cells.append(_format(experiment.conditions.get(SCAN_KEY)))
        for name in [objective, *(c.name for c in spec.constraints)]:
            cells.append(_measured(measured(spec, outcomes, name)) if outcomes else "")
        if proposals is not None:
            cells.append(proposed_by(proposals.get(experiment.id)))
        table.add_row(*cells, escape(status_text(spec, experiment)))
    return table


def status_text(spec: CampaignSpec, experiment: ExperimentRecord) -> str:
    """An experiment's state as an operator reads it: awaiting approval, infeasible, marked bad, why it failed."""
    status = experiment.status
    if status == ExperimentStatus.PLANNED and not experiment.approved:
        status = "awaiting approval"
    if status in (ExperimentStatus.RUNNING, ExperimentStatus.RAN) and experiment.step is not None:
        steps = spec.steps()
        if experiment.step < len(steps):
            status += f" {steps[experiment.step].name}"
    if experiment.status == ExperimentStatus.ANALYSED and not is_feasible(spec, experiment.outcomes):
        status += " (infeasible)"
    if experiment.failure_reason:
        status += f": {experiment.failure_reason.removeprefix('rejected: ')}"
    if experiment.excluded_reason:
        status += f"; marked bad: {experiment.excluded_reason}"
    return status


def proposed_by(proposal: ProposalRecord | None) -> str:
    """``"model, saw 7"`` (``", 1 pending"``) for a model's proposal, ``"design"`` for the initial design; the
    results it saw include experiments without a value for an objective (told to the planner as failures)."""
    if proposal is None:
        return ""
    if proposal.analysed_seen is None:  # recorded before Crucible kept what the planner knew
        return proposal.strategy
    if not proposal.model_made:
        return "design"
    text = f"model, saw {proposal.analysed_seen + (proposal.failed_seen or 0)}"
    return text + (f", {len(proposal.pending)} pending" if proposal.pending else "")


def closed_loop_line(
    spec: CampaignSpec, experiments: Sequence[ExperimentRecord], proposals: Mapping[str, ProposalRecord]
) -> str:
    """One line on how closed the loop was: proposals by the design and by the model, and what the model saw."""
    records = [proposals[e.id] for e in experiments if e.id in proposals]
    model = [p for p in records if p.model_made]
    design = len(records) - len(model)
    line = f"proposals: {design} by the initial design, {len(model)} by the model"
    if model:
        strategies = sorted({p.strategy for p in model})
        most_pending = max(len(p.pending) for p in model)
        line += f" ({', '.join(strategies)}), each with at most {most_pending} experiment(s) still pending"
    return line + f"; max_in_flight {spec.max_in_flight()}"


def state_line(record: CampaignRecord, spec: CampaignSpec, experiments: Sequence[ExperimentRecord]) -> str:
    """A campaign's state in one line: its status, what is done, under way, awaiting approval or marked bad, and
    (while it has work left) an ETA at the pace of its experiments so far."""
    budget = record.budget_experiments or spec.budget.experiments
    counts: dict[str, int] = {}
    for experiment in experiments:
        state = experiment.status
        if state == ExperimentStatus.PLANNED and not experiment.approved:
            state = "awaiting approval"
        elif state not in ExperimentStatus.TERMINAL:
            state = "under way"
        counts[state] = counts.get(state, 0) + 1
    marked_bad = sum(e.excluded_reason is not None for e in experiments)
    done = counts.get(ExperimentStatus.ANALYSED, 0) + counts.get(ExperimentStatus.FAILED, 0)
    order = (ExperimentStatus.ANALYSED, ExperimentStatus.FAILED, "under way", "awaiting approval", "rejected")
    parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
    if marked_bad:
        parts.append(f"{marked_bad} marked bad")
    line = f"{record.name}: {record.status}, {done} of {budget} experiments done" + (
        f" ({', '.join(parts)})" if parts else ""
    )
    eta = _eta_s(experiments, budget - done)
    if record.status != "finished" and eta is not None:
        line += f"; eta {_duration(eta)} at the pace so far"
    return line


def _eta_s(experiments: Sequence[ExperimentRecord], remaining: int) -> float | None:
    """Seconds left for ``remaining`` experiments at the campaign's pace so far (first proposal to latest result)."""
    finished = [e for e in experiments if e.status in (ExperimentStatus.ANALYSED, ExperimentStatus.FAILED)]
    if not finished or remaining <= 0:
        return None
    start = min(e.created_at for e in experiments)
    end = max(e.updated_at for e in finished)
    return max((end - start).total_seconds(), 0.0) / len(finished) * remaining


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _measured(measurement: Mapping[str, float]) -> str:
    value, std = measurement["value"], measurement["std"]
    if not math.isfinite(value):
        return "n.d."  # not determined (e.g. no anatase to size)
    return f"{value:.4g} ± {std:.2g}" if math.isfinite(std) else f"{value:.4g}"


def _format(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def plot_best_so_far(
    spec: CampaignSpec,
    experiments: Sequence[ExperimentRecord],
    path: Path,
    true_values: Sequence[float] | None = None,
    true_optimum: float | None = None,
    proposals: Mapping[str, ProposalRecord] | None = None,
) -> Path:
    """Write a PNG of the best feasible objective so far versus experiment number.

    With a simulated lab, ``true_values`` (the ground truth at each experiment's conditions, NaN if infeasible)
    and ``true_optimum`` are drawn too, so the campaign is scored against the truth.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sign = _sign(spec)
    objective = spec.objectives[0].name
    numbers = [e.index + 1 for e in experiments]
    measured = [sign * v for v in best_so_far(spec, experiments)]
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    feasible = [e for e in experiments if e.status == ExperimentStatus.ANALYSED and is_feasible(spec, e.outcomes)]
    by_model = {e.id for e in experiments if proposals and e.id in proposals and proposals[e.id].model_made}
    for label, group, marker, colour in (
        ("feasible, initial design (measured)", [e for e in feasible if e.id not in by_model], "o", "0.6"),
        ("feasible, proposed by the model (measured)", [e for e in feasible if e.id in by_model], "D", "C1"),
    ):
        if group:
            x = [e.index + 1 for e in group]
            y = [sign * objective_value(spec, e.outcomes) for e in group]
            axes.scatter(x, y, s=18, marker=marker, color=colour, label=label, zorder=3)
    axes.step(numbers, measured, where="post", color="C0", lw=2, label="best so far (measured)")
    if true_values is not None:
        best, truth_curve = -math.inf, []
        for value in true_values:
            if not math.isnan(value):
                best = max(best, sign * value)
            truth_curve.append(sign * best if math.isfinite(best) else math.nan)
        axes.step(numbers, truth_curve, where="post", color="C2", lw=1.5, ls="--", label="best so far (true value)")
    if true_optimum is not None:
        axes.axhline(true_optimum, color="C3", lw=1, ls=":", label=f"ground-truth optimum {true_optimum:.4g}")
    n_initial = spec.planner.initial_experiments
    axes.axvspan(0.5, n_initial + 0.5, color="0.92", zorder=0, label="initial design")
    axes.set_xlabel("experiment")
    axes.set_ylabel(objective)
    constraint_text = ", ".join(f"{c.name} {c.op} {c.value:g}" for c in spec.constraints)
    axes.set_title(
        f"{spec.name}: {spec.objectives[0].direction} {objective}"
        + (f"\nsubject to {constraint_text}" if constraint_text else ""),
        fontsize=10,
    )
    axes.legend(fontsize=8, loc="best")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
