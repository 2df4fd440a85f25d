"""Oxidation-state fractions from a XANES spectrum by linear combination fitting of measured standards.

The normalised spectrum is fitted as ``μ(E) = Σ_s w_s μ_s(E + ΔE)`` with non-negative weights ``w_s`` (one per
standard, e.g. Ce3+ and Ce4+) and one energy shift ``ΔE`` (monochromator calibration), as Athena's LCF does. The
fractions are the weights normalised to sum to one; their standard deviations come from the weights' covariance
(the residual's variance times ``(AᵀA)⁻¹``) by the delta rule, widened by the spread over the shift's uncertainty.
The standards are files of measured spectra: ``analysis/xanes_standards/<edge>.json`` for the shipped edges, or a
lab's own in the same form.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar, nnls

from analysis.phase_quantification import Measurement
from instruments.readings import Spectrum

__all__ = ["XanesFit", "XanesStandards", "fit_xanes_lcf", "load_standards", "shipped_edges"]

_SHIPPED = Path(__file__).parent / "xanes_standards"


@dataclass(frozen=True)
class XanesStandards:
    """Measured, normalised spectra of one absorption edge in each reference oxidation state.

    Attributes:
        edge: e.g. ``"Ce_L3"``.
        energy_ev: `m`-dim energy grid of the standards, eV (increasing).
        spectra: state label (``"ce3"``) -> `m`-dim normalised absorption.
    """

    edge: str
    energy_ev: NDArray[np.float64]
    spectra: dict[str, NDArray[np.float64]]


def shipped_edges() -> list[str]:
    """The edges whose standards ship with Crucible."""
    return sorted(path.stem for path in _SHIPPED.glob("*.json"))


def load_standards(source: str | Path) -> XanesStandards:
    """Standards from a shipped edge name (``"Ce_L3"``) or a JSON file ``{"edge", "energy_ev": [...],
    "states": {label: {"absorption": [...]}}}``.

    Raises:
        ValueError: an unknown edge, an unreadable file, or spectra that do not match the energy grid.
    """
    path = Path(source)
    if path.suffix != ".json":
        path = _SHIPPED / f"{source}.json"
        if not path.is_file():
            raise ValueError(f"no shipped XANES standards for edge {source!r}; shipped: {', '.join(shipped_edges())}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        energy = np.asarray(document["energy_ev"], dtype=np.float64)
        spectra = {label: np.asarray(s["absorption"], dtype=np.float64) for label, s in document["states"].items()}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"XANES standards {path}: cannot be read ({error})") from None
    if len(spectra) < 2 or any(mu.shape != energy.shape for mu in spectra.values()):
        raise ValueError(f"XANES standards {path}: need two or more spectra on the file's energy grid")
    if not np.all(np.diff(energy) > 0):
        raise ValueError(f"XANES standards {path}: energy_ev must increase")
    return XanesStandards(str(document.get("edge", path.stem)), energy, spectra)


@dataclass(frozen=True)
class XanesFit:
    """The linear combination that best reproduces a spectrum."""

    fractions: dict[str, Measurement]  # state label -> fraction (sums to one)
    energy_shift_ev: Measurement
    weight_sum: float  # Σ w_s: about 1 for a well-normalised spectrum
    r_factor: float  # Σ (data − fit)² / Σ data²

    def quantities(self) -> dict[str, Measurement]:
        out = {f"{label}_fraction": m for label, m in self.fractions.items()}
        out["energy_shift_ev"] = self.energy_shift_ev
        out["lcf_weight_sum"] = Measurement(self.weight_sum, math.nan)
        out["lcf_r_factor"] = Measurement(self.r_factor, math.nan)
        return out


def _design(standards: XanesStandards, energy: NDArray[np.float64], shift_ev: float) -> NDArray[np.float64]:
    return np.column_stack([np.interp(energy + shift_ev, standards.energy_ev, mu) for mu in standards.spectra.values()])


def fit_xanes_lcf(spectrum: Spectrum, standards: XanesStandards, max_shift_ev: float = 3.0) -> XanesFit:
    """Fit ``spectrum`` (normalised) as a non-negative combination of ``standards`` with one energy shift.

    Only the part of the spectrum inside the standards' energy range (less ``max_shift_ev`` on each side) is fitted.

    Raises:
        ValueError: the spectrum is not normalised, or overlaps the standards' range by fewer than 20 points.
    """
    if not spectrum.normalised:
        raise ValueError("XANES linear combination fitting needs a normalised spectrum (unit edge step)")
    low, high = standards.energy_ev[0] + max_shift_ev, standards.energy_ev[-1] - max_shift_ev
    inside = (spectrum.energy_ev >= low) & (spectrum.energy_ev <= high) & np.isfinite(spectrum.absorption)
    if inside.sum() < 20:
        raise ValueError(
            f"the spectrum ({spectrum.energy_ev.min():.0f}-{spectrum.energy_ev.max():.0f} eV) overlaps the "
            f"{standards.edge} standards ({low:.0f}-{high:.0f} eV) by {int(inside.sum())} points; need 20"
        )
    energy, mu = spectrum.energy_ev[inside], spectrum.absorption[inside]

    def residual(shift_ev: float) -> float:
        weights, norm = nnls(_design(standards, energy, shift_ev), mu)
        return float(norm**2)

    grid = np.linspace(-max_shift_ev, max_shift_ev, 61)
    start = float(grid[np.argmin([residual(s) for s in grid])])
    step = grid[1] - grid[0]
    found = minimize_scalar(residual, bounds=(max(start - step, -max_shift_ev), min(start + step, max_shift_ev)),
                            method="bounded", options={"xatol": 1e-4})
    shift = float(found.x)
    design = _design(standards, energy, shift)
    weights, norm = nnls(design, mu)
    dof = max(mu.size - len(weights) - 1, 1)
    sigma2 = norm**2 / dof
    cov_w = sigma2 * np.linalg.pinv(design.T @ design)
    # the shift's variance from the curvature of the residual sum of squares: var = 2 σ² / (d²S/dΔE²)
    h = 0.02
    curvature = (residual(shift + h) - 2.0 * residual(shift) + residual(shift - h)) / h**2
    shift_std = math.sqrt(2.0 * sigma2 / curvature) if curvature > 0 else math.nan
    total = float(weights.sum())
    if total <= 0:
        raise ValueError(f"no combination of the {standards.edge} standards reproduces the spectrum")
    jac = (np.eye(len(weights)) * total - weights[:, None]) / total**2  # d(w_i / Σw) / dw_j
    cov_f = jac @ cov_w @ jac.T
    # widen by how much the fractions move over one standard deviation of the shift
    spread = np.zeros(len(weights))
    if math.isfinite(shift_std):
        for delta in (-shift_std, shift_std):
            moved, _ = nnls(_design(standards, energy, shift + delta), mu)
            if moved.sum() > 0:
                spread = np.maximum(spread, np.abs(moved / moved.sum() - weights / total))
    fractions = {
        label: Measurement(float(weights[i] / total), float(math.sqrt(max(cov_f[i, i], 0.0) + spread[i] ** 2)))
        for i, label in enumerate(standards.spectra)
    }
    return XanesFit(
        fractions=fractions,
        energy_shift_ev=Measurement(shift, shift_std),
        weight_sum=total,
        r_factor=float(norm**2 / np.sum(mu**2)),
    )
