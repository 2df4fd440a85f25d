"""Pictures of XRD analyses: a measured powder pattern with its whole-pattern fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.phase_quantification import PhaseQuantification
from instruments.readings import Diffractogram

__all__ = ["draw_xrd_fit", "plot_pattern_fit"]


def draw_xrd_fit(reading: Any, report: Any, title: str, path: Path) -> Path | None:
    """The view an XRD step offers (:attr:`agents.analyses.AnalysisKind.view`): the fit, if the report has one."""
    details = getattr(report, "details", None)
    if not isinstance(reading, Diffractogram) or not isinstance(details, PhaseQuantification):
        return None
    return plot_pattern_fit(reading, details, title, path)


def plot_pattern_fit(reading: Diffractogram, fit: PhaseQuantification, title: str, path: Path) -> Path:
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
    axes.set_title(f"{title}: {fractions}", fontsize=9)
    axes.set_xlabel("2θ (degrees)")
    axes.set_ylabel("counts")
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
