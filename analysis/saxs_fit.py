"""SAXS: classify the particle shape (sphere, cylinder, core-shell sphere) and fit its size and polydispersity.

Each shape's I(q) is fitted by weighted least squares and the shapes are compared by the Bayesian information
criterion, BIC = χ² + k ln n (k parameters, n points), turned into relative probabilities exp(−ΔBIC / 2). The
forms follow sasmodels' conventions (lengths in Å, q in 1/Å, I in 1/cm) with Schulz size distributions of relative
width ``pd`` (σ / mean), averaged by Gauss–Legendre quadrature over mean ± 5σ:

- sphere: ``I = s · ⟨V² f²(qR)⟩ / ⟨V⟩ + b``, ``f(x) = 3 (sin x − x cos x) / x³``;
- core-shell sphere: ``F = c V_core f(qR) + V_total f(q(R + t))`` with ``c`` = (ρ_core − ρ_shell) / (ρ_shell −
  ρ_solvent), ``I = s · ⟨F²⟩ / ⟨V_total⟩ + b``;
- cylinder (random orientation): ``F = V · 2J1(qR sinα)/(qR sinα) · sinc(qL cosα / 2)``, averaged over cos α.

The scale ``s`` lumps volume fraction and contrast, ``φ Δρ² · 1e-4`` (Δρ in 1e-6/Å²), since one curve cannot
separate them. Uncertainties are from the fit's covariance scaled by the reduced χ².
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares
from scipy.special import j1

from analysis.phase_quantification import Measurement
from instruments.readings import ScatteringCurve

__all__ = ["SHAPES", "SAXSAnalysis", "ShapeFit", "fit_saxs", "guinier_radius", "intensity"]

_N_SIZE = 20
_N_ORIENTATION = 32


def _schulz(mean: float, pd: float, n: int = _N_SIZE) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Nodes and weights (summing to 1) of a Schulz distribution of mean ``mean`` and relative width ``pd``."""
    if pd < 1e-3:
        return np.array([mean]), np.array([1.0])
    sigma = pd * mean
    low, high = max(mean - 5.0 * sigma, mean * 1e-3), mean + 5.0 * sigma
    nodes, weights = np.polynomial.legendre.leggauss(n)
    x = 0.5 * (high - low) * nodes + 0.5 * (high + low)
    z = 1.0 / pd**2
    log_p = (z - 1.0) * np.log(x / mean) - z * x / mean
    w = weights * np.exp(log_p - log_p.max())
    return x, w / w.sum()


def _sphere_amplitude(x: NDArray[np.float64]) -> NDArray[np.float64]:
    x = np.maximum(x, 1e-6)
    small = x < 0.05
    out = np.where(small, 1.0 - x**2 / 10.0 + x**4 / 280.0, 3.0 * (np.sin(x) - x * np.cos(x)) / x**3)
    return out


def _sphere(q: NDArray[np.float64], p: dict[str, float]) -> NDArray[np.float64]:
    r, w = _schulz(p["radius_angstrom"], p["radius_pd"])
    volume = 4.0 / 3.0 * math.pi * r**3
    return ((volume * _sphere_amplitude(np.outer(q, r))) ** 2 @ w) / (volume @ w)


def _core_shell(q: NDArray[np.float64], p: dict[str, float]) -> NDArray[np.float64]:
    r, w = _schulz(p["radius_angstrom"], p["radius_pd"])
    outer = r + p["thickness_angstrom"]
    v_core, v_total = 4.0 / 3.0 * math.pi * r**3, 4.0 / 3.0 * math.pi * outer**3
    amplitude = (p["contrast_ratio"] * v_core * _sphere_amplitude(np.outer(q, r))
                 + v_total * _sphere_amplitude(np.outer(q, outer)))
    return (amplitude**2 @ w) / (v_total @ w)


def _cylinder(q: NDArray[np.float64], p: dict[str, float]) -> NDArray[np.float64]:
    radii, radius_w = _schulz(p["radius_angstrom"], p["radius_pd"])
    length = p["length_angstrom"]
    nodes, weights = np.polynomial.legendre.leggauss(_N_ORIENTATION)
    u, u_w = 0.5 * (nodes + 1.0), 0.5 * weights  # u = cos α on [0, 1]
    x = q[:, None, None] * np.sqrt(1.0 - u**2)[None, :, None] * radii[None, None, :]
    x = np.maximum(x, 1e-8)
    area = math.pi * radii**2
    radial = ((2.0 * j1(x) / x) ** 2) @ (radius_w * area**2)  # (q, u)
    axial = np.sinc(q[:, None] * u[None, :] * 0.5 * length / math.pi) ** 2 * length**2  # (q, u)
    return ((radial * axial) @ u_w) / (float(area @ radius_w) * length)


@dataclass(frozen=True)
class _Shape:
    form: Callable[[NDArray[np.float64], dict[str, float]], NDArray[np.float64]]
    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]


SHAPES: dict[str, _Shape] = {
    "sphere": _Shape(_sphere, ("radius_angstrom", "radius_pd"), (5.0, 0.0), (2000.0, 0.5)),
    "cylinder": _Shape(_cylinder, ("radius_angstrom", "length_angstrom", "radius_pd"), (3.0, 5.0, 0.0),
                       (1000.0, 5000.0, 0.5)),
    "core_shell_sphere": _Shape(_core_shell, ("radius_angstrom", "thickness_angstrom", "radius_pd", "contrast_ratio"),
                                (5.0, 1.0, 0.0, -20.0), (2000.0, 500.0, 0.5, 20.0)),
}


def intensity(shape: str, q_inv_angstrom: NDArray[np.float64], scale: float, background_per_cm: float,
              **parameters: float) -> NDArray[np.float64]:
    """I(q) in 1/cm of ``shape`` (a key of :data:`SHAPES`) with its parameters (see the module docstring)."""
    q = np.asarray(q_inv_angstrom, dtype=np.float64)
    return scale * SHAPES[shape].form(q, parameters) + background_per_cm


def guinier_radius(curve: ScatteringCurve, q_rg_max: float = 1.3) -> float:
    """Radius of gyration in Å from the Guinier law ln I = ln I0 − q² Rg² / 3 at the lowest q (iterated until
    q·Rg ≤ ``q_rg_max``)."""
    q, y = curve.q_inv_angstrom, np.maximum(curve.intensity, 1e-30)
    n = max(8, q.size // 10)
    rg = 0.0
    for _ in range(10):
        slope = np.polyfit(q[:n] ** 2, np.log(y[:n]), 1)[0]
        rg = math.sqrt(max(-3.0 * slope, 1.0))
        keep = int(np.searchsorted(q, q_rg_max / rg))
        if keep == n or keep < 4:
            break
        n = max(keep, 4)
    return rg


@dataclass(frozen=True)
class ShapeFit:
    """One shape fitted to one curve.

    Attributes:
        shape: the shape's name; parameters: its fitted parameters (Å, dimensionless) with standard deviations,
            plus ``scale`` (φ Δρ² · 1e-4) and ``background_per_cm``.
        reduced_chi2: χ² per degree of freedom; bic: the Bayesian information criterion.
        calculated: `n` the fitted I(q) in 1/cm.
    """

    shape: str
    parameters: dict[str, Measurement]
    reduced_chi2: float
    bic: float
    calculated: NDArray[np.float64] = field(repr=False)


@dataclass(frozen=True)
class SAXSAnalysis:
    """The result of :func:`fit_saxs`: the best shape, every shape's fit and the shapes' relative probabilities."""

    best: ShapeFit
    fits: dict[str, ShapeFit]
    probabilities: dict[str, float]

    def quantities(self) -> dict[str, Measurement]:
        """``shape_<name>_probability`` for every shape, and the best shape's parameters."""
        out = {f"shape_{name}_probability": Measurement(p, math.nan) for name, p in self.probabilities.items()}
        out.update(self.best.parameters)
        out["reduced_chi2"] = Measurement(self.best.reduced_chi2, 0.0)
        return out


def _starts(shape: str, rg: float) -> list[dict[str, float]]:
    sphere_radius = math.sqrt(5.0 / 3.0) * rg
    if shape == "sphere":
        return [{"radius_angstrom": sphere_radius, "radius_pd": pd} for pd in (0.05, 0.15, 0.3)]
    if shape == "cylinder":
        starts = []
        for aspect in (4.0, 10.0, 25.0):  # Rg² = R²/2 + L²/12 with L = aspect · R
            radius = rg / math.sqrt(0.5 + aspect**2 / 12.0)
            starts.append({"radius_angstrom": radius, "length_angstrom": aspect * radius, "radius_pd": 0.1})
        return starts
    return [{"radius_angstrom": 0.8 * sphere_radius, "thickness_angstrom": 0.25 * sphere_radius, "radius_pd": 0.1,
             "contrast_ratio": ratio} for ratio in (-2.0, 1.0)]


def _fit_shape(curve: ScatteringCurve, shape: str, rg: float, fixed: dict[str, float]) -> ShapeFit:
    q, y = curve.q_inv_angstrom, curve.intensity
    sigma = np.where(curve.sigma > 0, curve.sigma, np.maximum(np.abs(y) * 0.05, 1e-12))
    spec = SHAPES[shape]
    free = [name for name in spec.names if name not in fixed]
    bounds = {name: (low, high) for name, low, high in zip(spec.names, spec.lower, spec.upper, strict=True)}
    background = max(float(np.median(y[-max(q.size // 20, 3):])) * 0.5, 0.0)
    best = None
    for start in _starts(shape, rg):
        start.update(fixed)
        unit = spec.form(q, start)
        scale = max(float(y[:5].mean() - background) / max(float(unit[:5].mean()), 1e-30), 1e-30)
        lower = np.array([-np.inf, 0.0, *[bounds[name][0] for name in free]])
        upper = np.array([np.inf, np.inf, *[bounds[name][1] for name in free]])
        x0 = np.clip(np.array([math.log(scale), background, *[start[name] for name in free]]), lower + 1e-9,
                     upper - 1e-9)

        def residuals(x: NDArray[np.float64]) -> NDArray[np.float64]:
            params = {**fixed, **dict(zip(free, x[2:], strict=True))}
            return (math.exp(x[0]) * spec.form(q, params) + x[1] - y) / sigma

        result = least_squares(residuals, x0, bounds=(lower, upper), x_scale="jac", max_nfev=200)
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    n, k = q.size, best.x.size
    chi2 = float(2.0 * best.cost)
    reduced = chi2 / max(n - k, 1)
    _, singular, vt = np.linalg.svd(best.jac, full_matrices=False)
    kept = singular > singular[0] * 1e-12
    inverse = np.zeros_like(singular)
    inverse[kept] = 1.0 / singular[kept] ** 2
    covariance = (vt.T * inverse) @ vt * reduced
    errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    scale = math.exp(best.x[0])
    parameters = {
        "scale": Measurement(scale, scale * float(errors[0])),
        "background_per_cm": Measurement(float(best.x[1]), float(errors[1])),
    }
    for name, value, error in zip(free, best.x[2:], errors[2:], strict=True):
        parameters[name] = Measurement(float(value), float(error))
    for name, value in fixed.items():
        parameters[name] = Measurement(float(value), 0.0)
    if shape == "core_shell_sphere":  # the outer radius is better determined than core and shell apart
        index = [free.index(name) + 2 for name in ("radius_angstrom", "thickness_angstrom") if name in free]
        variance = float(covariance[np.ix_(index, index)].sum()) if index else 0.0
        outer = parameters["radius_angstrom"].value + parameters["thickness_angstrom"].value
        parameters["outer_radius_angstrom"] = Measurement(outer, math.sqrt(max(variance, 0.0)))
    calculated = best.fun * sigma + y
    return ShapeFit(shape, parameters, reduced, chi2 + k * math.log(n), calculated)


def fit_saxs(
    curve: ScatteringCurve, shapes: Sequence[str] = tuple(SHAPES), fixed: dict[str, dict[str, float]] | None = None
) -> SAXSAnalysis:
    """Fit every shape in ``shapes`` to ``curve`` and rank them by BIC.

    Args:
        curve: I(q) with its standard deviations.
        shapes: names from :data:`SHAPES`.
        fixed: per shape, parameters held at known values, e.g. ``{"core_shell_sphere": {"contrast_ratio": 1.0}}``
            when the scattering-length densities are known (core and shell are otherwise poorly separated).

    Raises:
        ValueError: for an unknown shape or parameter name.
    """
    unknown = sorted(set(shapes) - set(SHAPES))
    if unknown:
        raise ValueError(f"unknown shape(s) {unknown}; known: {sorted(SHAPES)}")
    fixed = fixed or {}
    for shape, values in fixed.items():
        wrong = sorted(set(values) - set(SHAPES[shape].names)) if shape in SHAPES else [shape]
        if wrong:
            raise ValueError(f"cannot fix {wrong} of {shape!r}")
    rg = guinier_radius(curve)
    fits = {shape: _fit_shape(curve, shape, rg, dict(fixed.get(shape, {}))) for shape in shapes}
    best_bic = min(f.bic for f in fits.values())
    weights = {name: math.exp(-0.5 * (f.bic - best_bic)) for name, f in fits.items()}
    total = sum(weights.values())
    probabilities = {name: w / total for name, w in weights.items()}
    best = min(fits.values(), key=lambda f: f.bic)
    return SAXSAnalysis(best, fits, probabilities)
