"""Campaign reports: a table of experiments and a plot of the best objective so far versus experiments."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from analysis.phase_quantification import PhaseQuantification
from instruments.readings import Diffractogram
from orchestrator.campaign import best_so_far, is_feasible, objective_value
from orchestrator.spec import SCAN_KEY, CampaignSpec
from orchestrator.store import ExperimentRecord, ExperimentStatus

__all__ = ["experiment_table", "plot_best_so_far", "plot_pattern_fit"]


def _sign(spec: CampaignSpec) -> float:
    return -1.0 if spec.objectives[0].direction == "minimize" else 1.0


def experiment_table(spec: CampaignSpec, experiments: Sequence[ExperimentRecord]) -> Table:
    """One row per experiment: conditions, objective and constraint outcomes with uncertainties, status."""
    objective = spec.objectives[0].name
    table = Table(title=f"campaign {spec.name}")
    table.add_column("#", justify="right")
    for parameter in spec.parameters:
        table.add_column(f"{parameter.name}\n[{parameter.unit}]" if parameter.unit else parameter.name, justify="right")
    scans = spec.measurement.scans is not None
    if scans:
        table.add_column(SCAN_KEY)
    table.add_column(objective, justify="right")
    for constraint in spec.constraints:
        table.add_column(f"{constraint.name}\n{constraint.op} {constraint.value:g}", justify="right")
    table.add_column("status")
    for experiment in experiments:
        outcomes = experiment.outcomes
        cells = [str(experiment.index)]
        cells += [_format(experiment.conditions.get(p.name)) for p in spec.parameters]
        if scans:
            cells.append(_format(experiment.conditions.get(SCAN_KEY)))
        for name in [objective, *(c.name for c in spec.constraints)]:
            cells.append(f"{outcomes[name]['value']:.4g} ± {outcomes[name]['std']:.2g}" if name in outcomes else "")
        status = experiment.status
        if experiment.status == ExperimentStatus.ANALYSED and not is_feasible(spec, outcomes):
            status += " (infeasible)"
        if experiment.failure_reason:
            status += f": {experiment.failure_reason}"
        table.add_row(*cells, status)
    return table


def _format(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def plot_best_so_far(
    spec: CampaignSpec,
    experiments: Sequence[ExperimentRecord],
    path: Path,
    true_values: Sequence[float] | None = None,
    true_optimum: float | None = None,
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
    points = [
        (e.index + 1, sign * objective_value(spec, e.outcomes))
        for e in experiments
        if e.status == ExperimentStatus.ANALYSED and is_feasible(spec, e.outcomes)
    ]
    if points:
        axes.scatter(*zip(*points, strict=True), s=18, color="0.6", label="feasible experiments (measured)")
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
    axes.legend(fontsize=8, loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_pattern_fit(
    experiment: ExperimentRecord, reading: Diffractogram, fit: PhaseQuantification, path: Path
) -> Path:
    """Write a PNG of a measured pattern with its whole-pattern fit, background and difference curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    x = reading.two_theta_deg
    axes.plot(x, reading.counts, ".", ms=1.5, color="0.3", label="measured")
    axes.plot(x, fit.calculated, color="C3", lw=1, label=f"fit (Rwp {fit.rwp:.3f})")
    axes.plot(x, fit.background, color="C2", lw=1, label="background")
    offset = -0.1 * float(reading.counts.max())
    axes.plot(x, reading.counts - fit.calculated + offset, color="C0", lw=0.6, label="difference")
    fractions = ", ".join(f"{p.name} {p.weight_fraction.value:.3f}" for p in fit.phases)
    axes.set_title(f"experiment {experiment.index}, sample {experiment.sample_id}: {fractions}", fontsize=9)
    axes.set_xlabel("2θ (degrees)")
    axes.set_ylabel("counts")
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
