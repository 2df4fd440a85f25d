"""Pictures of a whole campaign beside the best-so-far plot: the Pareto front of a multi-objective campaign, and the
map of its shares (phase weight fractions, or any fraction an analysis reports) over the first two conditions.

Each function writes one PNG and returns its path, or None when the campaign has nothing to draw yet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from orchestrator.outcomes import counts, is_feasible, measured, non_dominated, utility
from orchestrator.spec import CampaignSpec, ObjectiveSpec
from orchestrator.store import ExperimentRecord

__all__ = ["hypervolume_2d", "plot_pareto_front", "plot_share_map"]


def hypervolume_2d(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """The area dominated by ``points`` (utilities, both maximised) above ``reference``."""
    front = sorted((p for p in points if p[0] > reference[0] and p[1] > reference[1]), key=lambda p: -p[0])
    area, best_y = 0.0, reference[1]
    for x, y in front:
        if y > best_y:
            area += (x - reference[0]) * (y - best_y)
            best_y = y
    return area


def _matplotlib():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pareto_front(spec: CampaignSpec, experiments: Sequence[ExperimentRecord], path: Path) -> Path | None:
    """The first two objectives of every analysed experiment, the feasible Pareto front and the reference point
    (left), and the hypervolume of the front over experiments (right). None with fewer than two objectives or
    nothing analysed."""
    if len(spec.objectives) < 2 or spec.planner.mode == "explore":  # explore mode maps quantities, seeks no front
        return None
    first, second = spec.objectives[0], spec.objectives[1]
    rows = []
    for e in experiments:
        if not counts(e):
            continue
        a, b = measured(spec, e.outcomes, first.name)["value"], measured(spec, e.outcomes, second.name)["value"]
        if math.isfinite(a) and math.isfinite(b):
            rows.append((e, a, b, is_feasible(spec, e.outcomes)))
    if not rows:
        return None
    feasible = [(e, a, b) for e, a, b, ok in rows if ok]
    utilities = [(utility(first, a), utility(second, b)) for _, a, b in feasible]
    on_front = {e.id for e in non_dominated(spec, [e for e, _, _ in feasible], (first, second))}
    front = [(e, a, b) for e, a, b in feasible if e.id in on_front]
    if first.reference is not None and second.reference is not None:
        reference = (utility(first, first.reference), utility(second, second.reference))
        reference_label = "reference point (campaign file)"
    elif utilities:
        low = [min(u[i] for u in utilities) for i in (0, 1)]
        span = [max(u[i] for u in utilities) - low[i] or 1.0 for i in (0, 1)]
        reference = (low[0] - 0.1 * span[0], low[1] - 0.1 * span[1])
        reference_label = "reference point (nadir - 10 %)"
    else:
        reference, reference_label = None, ""

    plt = _matplotlib()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
    infeasible = [(a, b) for _, a, b, ok in rows if not ok]
    if infeasible:
        left.scatter(*zip(*infeasible, strict=True), s=18, marker="x", color="0.6", label="misses a constraint")
    if feasible:
        left.scatter([a for _, a, _ in feasible], [b for _, _, b in feasible], s=20, color="C0", label="feasible")
    if front:
        ordered = sorted(front, key=lambda r: utility(first, r[1]))
        left.plot(
            [a for _, a, _ in ordered],
            [b for _, _, b in ordered],
            "o-",
            color="C3",
            lw=1.5,
            label=f"Pareto front ({len(front)})",
        )
        for e, a, b in ordered:
            left.annotate(str(e.index), (a, b), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if reference is not None:  # the worst value still worth anything on each axis (both sides of a target)
        for objective, u, line in ((first, reference[0], left.axvline), (second, reference[1], left.axhline)):
            for k, value in enumerate(_reference_values(objective, u)):
                line(value, color="k", ls="--", lw=1, label=reference_label if objective is first and k == 0 else None)
            if objective.target is not None:
                line(objective.target, color="C2", ls=":", lw=1.2, label=f"target {objective.name}")
    left.set_xlabel(_axis_label(first))
    left.set_ylabel(_axis_label(second))
    left.set_title(f"{spec.name}: measured objectives (numbers: experiments)", fontsize=10)
    left.legend(fontsize=8, loc="best")
    left.grid(alpha=0.3)

    if reference is not None:
        by_index = sorted(rows, key=lambda r: r[0].index)
        seen: list[tuple[float, float]] = []
        volumes = []
        for e, a, b, ok in by_index:
            if ok:
                seen.append((utility(first, a), utility(second, b)))
            volumes.append((e.index + 1, hypervolume_2d(seen, reference)))
        right.step(*zip(*volumes, strict=True), where="post", color="C0", lw=2)
        n_initial = spec.planner.initial_experiments
        right.axvspan(0.5, n_initial + 0.5, color="0.92", zorder=0, label="initial design")
        right.legend(fontsize=8, loc="lower right")
    right.set_xlabel("experiment")
    right.set_ylabel("hypervolume of the feasible front")
    right.set_title("hypervolume over experiments", fontsize=10)
    right.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _reference_values(objective: ObjectiveSpec, u: float) -> list[float]:
    """The objective values whose utility is ``u``: one, or both sides of a target."""
    if objective.direction == "minimize":
        return [-u]
    if objective.direction == "target":
        assert objective.target is not None
        return [objective.target + u, objective.target - u]
    return [u]


def _axis_label(objective: ObjectiveSpec) -> str:
    goal = {"maximize": "maximise", "minimize": "minimise"}.get(objective.direction, f"target {objective.target}")
    return f"{objective.name} ({goal})"


def plot_share_map(spec: CampaignSpec, experiments: Sequence[ExperimentRecord], path: Path) -> Path | None:
    """One panel per share (a fraction in [0, 1] the analysis reports and the campaign names, e.g. a phase weight
    fraction) over the first two continuous conditions, coloured by its measured value, plus a panel of which
    share dominates at each point. None with fewer than two shares or two continuous parameters, or no data."""
    shares = list(spec.shares())
    axes_parameters = [p for p in spec.parameters if p.kind == "continuous"][:2]
    if len(shares) < 2 or len(axes_parameters) < 2:
        return None
    x_name, y_name = (p.name for p in axes_parameters)
    points = []
    for e in experiments:
        if not counts(e):
            continue
        values = [measured(spec, e.outcomes, name)["value"] for name in shares]
        if all(math.isfinite(v) for v in values):
            points.append((float(e.conditions[x_name]), float(e.conditions[y_name]), values))
    if not points:
        return None
    plt = _matplotlib()
    panels = len(shares) + 1
    figure, axes = plt.subplots(1, panels, figsize=(3.4 * panels, 3.6), dpi=110, squeeze=False)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    for k, name in enumerate(shares):
        ax = axes[0][k]
        artist = ax.scatter(
            xs, ys, c=[p[2][k] for p in points], cmap="viridis", vmin=0, vmax=1, s=60, edgecolors="k", linewidths=0.3
        )
        ax.set_title(name, fontsize=9)
        figure.colorbar(artist, ax=ax, fraction=0.046, pad=0.04)
    ax = axes[0][-1]
    dominant = [max(range(len(shares)), key=lambda k, p=p: p[2][k]) for p in points]
    for k, name in enumerate(shares):
        chosen = [(x, y) for (x, y, _), d in zip(points, dominant, strict=True) if d == k]
        if chosen:
            ax.scatter(
                *zip(*chosen, strict=True),
                s=60,
                color=f"C{k}",
                edgecolors="k",
                linewidths=0.3,
                label=name.split(".")[-1],
            )
    ax.set_title("largest share at each point", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    for ax in axes[0]:
        ax.set_xlabel(_parameter_label(spec, x_name), fontsize=8)
        ax.set_ylabel(_parameter_label(spec, y_name), fontsize=8)
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=7)
    figure.suptitle(f"{spec.name}: measured shares over {x_name} and {y_name} ({len(points)} points)", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _parameter_label(spec: CampaignSpec, name: str) -> str:
    unit = next((p.unit for p in spec.parameters if p.name == name), None)
    return f"{name} [{unit}]" if unit else name
