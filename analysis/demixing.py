"""Demixing a set of powder patterns (a composition spread, a time series) into component patterns with NMF.

Model: the counts of sample ``s`` are a non-negative mixture ``Σ_k W_sk H_k`` of ``K`` component patterns (phases,
if peak positions and widths do not change between samples) on top of the sample's own smooth background (a
Chebyshev polynomial). scikit-learn's NMF (coordinate descent) fits the mixture to the background-free counts,
alternating with a weighted least-squares fit of each background to what the mixture leaves; the backgrounds start
from iterative peak clipping. Each ``K`` is judged by the Poisson deviance of the full model against the counts.

Number of components, from the data: ``K`` grows while the deviance drops by much more than fitting noise could
explain. An extra component has ``S + N`` free parameters (``S`` samples, ``N`` points), and on pure noise each lowers
the deviance by about one, so a component is kept only if it lowers the deviance by more than ``significance ·
(S + N)`` and by more than ``min_gain`` of what is left (which stops peak-shape drifts from being split into
spurious components).

Intensity scale: the deviances assume counts. Patterns given in other units (max-normalised, counts per second,
a detector's arbitrary units) are first put on a counting scale: ``counts_per_unit`` if the caller knows it, else
inferred from the noise itself (:func:`counting_scale`: for Poisson counts the point-to-point scatter's variance
equals the level, so level / variance is the number of counts one unit stands for; real counts give about 1).

Phase regions: a component is present in a sample when the sample needs it: removing it from that sample's model
must raise the sample's Poisson deviance by more than ``presence_deviance`` (100 by default, a Δχ² of a ten-sigma
effect for one parameter). This finds a minor phase of weak scatterers (a few wt% of TiO2 beside CeO2, 1-2% of the
diffracted intensity) that a threshold on intensity shares would miss. Samples with the same set of present
components form one region.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import chebyshev
from numpy.typing import NDArray
from scipy.ndimage import maximum_filter1d, minimum_filter1d
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning

from instruments.readings import Diffractogram

__all__ = ["Demixing", "counting_scale", "demix", "estimate_background", "poisson_deviance"]


def estimate_background(
    two_theta_deg: NDArray[np.float64], counts: NDArray[np.float64], terms: int = 6, iterations: int = 40
) -> NDArray[np.float64]:
    """A smooth Chebyshev background under the peaks, by iterative peak clipping.

    The first polynomial goes through the lower envelope of the counts (a morphological opening about 1° wide),
    below the background. Each pass then fits the polynomial by least squares to the measured counts clipped at the
    previous fit plus twice its Poisson standard deviation: background points pull the curve up to where they
    scatter, peaks cannot.

    Args:
        two_theta_deg: `n` angles in degrees; counts: `n` counts.

    Returns:
        `n` background counts.
    """
    return _clipped_background(_chebyshev_basis(two_theta_deg, terms), counts, iterations)


def _chebyshev_basis(two_theta_deg: NDArray[np.float64], terms: int) -> NDArray[np.float64]:
    x = np.asarray(two_theta_deg, dtype=np.float64)
    return chebyshev.chebvander(2.0 * (x - x[0]) / (x[-1] - x[0]) - 1.0, terms - 1)


def _clipped_background(basis: NDArray[np.float64], counts: NDArray[np.float64], iterations: int = 40,
                        window: int = 51) -> NDArray[np.float64]:
    original = np.asarray(counts, dtype=np.float64)
    # Start below the background: a polynomial through the morphological opening (lower envelope) of the counts.
    envelope = maximum_filter1d(minimum_filter1d(original, window, mode="nearest"), window, mode="nearest")
    coefficients, *_ = np.linalg.lstsq(basis, envelope, rcond=None)
    fit = basis @ coefficients
    y = envelope
    for _ in range(iterations):
        # Clip the measured counts (not last pass's clipped ones) at the current fit plus twice its Poisson
        # standard deviation: background points pull the curve up to where they scatter, peaks cannot.
        clipped = np.minimum(original, fit + 2.0 * np.sqrt(np.maximum(fit, 1.0)))
        if np.allclose(clipped, y, rtol=0.0, atol=1e-3):
            break
        y = clipped
        coefficients, *_ = np.linalg.lstsq(basis, y, rcond=None)
        fit = basis @ coefficients
    return np.maximum(fit, 0.0)


def counting_scale(intensities: NDArray[np.float64]) -> float:
    """How many Poisson counts one unit of ``intensities`` (`S x N`, or `N`) stands for, from their noise.

    The noise of each point is read from the second difference of its neighbours (``y[i-1] - 2 y[i] + y[i+1]``
    has variance ``6 σ²`` for white noise, and smooth peaks barely add to it on a fine grid); robustly (median
    absolute deviation) over the lower half of the intensities, where the background sits. For counts
    ``σ² = y``, so the scale is ``median(y) / σ²`` there: 1 for counts, large for max-normalised patterns.

    Raises:
        ValueError: if the intensities show no noise at all (a computed pattern: give the scale instead).
    """
    y = np.atleast_2d(np.asarray(intensities, dtype=np.float64))
    ratios = []
    for row in y:
        d = row[:-2] - 2.0 * row[1:-1] + row[2:]
        level = row[1:-1]
        low = level <= np.median(level)
        if low.sum() < 10:
            continue
        sigma = 1.4826 * np.median(np.abs(d[low] - np.median(d[low]))) / np.sqrt(6.0)
        typical = float(np.median(level[low]))
        if typical > 0 and sigma > 1e-6 * typical:  # below that: rounding, not counting noise
            ratios.append(typical / sigma**2)
    if not ratios:
        raise ValueError("the patterns show no counting noise to infer their scale from; give counts_per_unit")
    return float(np.median(ratios))


def poisson_deviance(counts: NDArray[np.float64], expected: NDArray[np.float64]) -> float:
    """Poisson deviance 2 Σ [y ln(y / μ) − (y − μ)] (≈ χ², about one per point for a correct model)."""
    y = np.asarray(counts, dtype=np.float64)
    mu = np.maximum(np.asarray(expected, dtype=np.float64), 1e-9)
    log_term = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
    return float(2.0 * np.sum(log_term - (y - mu)))


@dataclass(frozen=True)
class Demixing:
    """The result of :func:`demix` for `S` samples of `N` points and `K` components.

    Attributes:
        n_components: `K`, chosen from the data.
        two_theta_deg: `N` angles of the (binned) grid the components live on, degrees.
        components: `K x N` component patterns (counts per unit weight), each scaled to unit maximum.
        weights: `S x K` share of each sample's diffracted intensity per component (rows sum to 1).
        significance: `S x K` rise of each sample's deviance when the component is removed from it.
        regions: `S` region labels, 0, 1, ..., one per distinct set of present components.
        region_components: for each region label, the (sorted) components present.
        deviance: Poisson deviance of the model with 1, 2, ... components (index 0 is K = 1).
        backgrounds: `S x N` the backgrounds removed, in the patterns' own units.
        counts_per_unit: the counting scale the deviances were computed on (given, or inferred from the noise).
    """

    n_components: int
    two_theta_deg: NDArray[np.float64]
    components: NDArray[np.float64]
    weights: NDArray[np.float64]
    significance: NDArray[np.float64]
    regions: NDArray[np.int64]
    region_components: list[tuple[int, ...]]
    deviance: list[float]
    backgrounds: NDArray[np.float64] = field(repr=False)
    counts_per_unit: float = 1.0


def _fit_nmf(
    data: NDArray[np.float64], k: int, seed: int, start: tuple[NDArray[np.float64], NDArray[np.float64]] | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if start is None:
        model = NMF(n_components=k, init="nndsvda", solver="cd", max_iter=400, tol=1e-5, random_state=seed)
        fit = lambda: model.fit_transform(data)  # noqa: E731
    else:
        model = NMF(n_components=k, init="custom", solver="cd", max_iter=200, tol=1e-5, random_state=seed)
        fit = lambda: model.fit_transform(data, W=start[0].copy(), H=start[1].copy())  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        w = fit()
    return w, model.components_


def _fit_with_background(
    counts: NDArray[np.float64], basis: NDArray[np.float64], k: int, rounds: int, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float]:
    """Alternate NMF of the background-free counts and a weighted Chebyshev fit of each background to what the
    mixture leaves; returns W (`S x K`), H (`K x N`), backgrounds (`S x N`) and the Poisson deviance."""
    backgrounds = np.stack([_clipped_background(basis, y) for y in counts])
    start = None
    for _ in range(rounds):
        w, h = _fit_nmf(np.clip(counts - backgrounds, 0.0, None), k, seed, start)
        start = (w, h)
        remainder = counts - w @ h
        weights = 1.0 / np.sqrt(np.maximum(counts, 1.0))
        for s in range(counts.shape[0]):
            coefficients, *_ = np.linalg.lstsq(basis * weights[s, :, None], remainder[s] * weights[s], rcond=None)
            backgrounds[s] = np.maximum(basis @ coefficients, 0.0)
    return w, h, backgrounds, poisson_deviance(counts, w @ h + backgrounds)


def demix(
    patterns: Sequence[Diffractogram] | NDArray[np.float64],
    two_theta_deg: NDArray[np.float64] | None = None,
    max_components: int = 6,
    significance: float = 5.0,
    min_gain: float = 0.1,
    presence_deviance: float = 100.0,
    background_terms: int = 6,
    rounds: int = 6,
    bin_points: int = 4,
    seed: int = 0,
    counts_per_unit: float | None = None,
) -> Demixing:
    """Demix patterns measured on one grid into components and group the samples into phase regions.

    Args:
        patterns: `S` diffractograms on one 2θ grid, or an `S x N` array of counts (then give ``two_theta_deg``).
        two_theta_deg: `N` angles for an array input.
        max_components: the largest `K` tried.
        significance: deviance drop per free parameter an extra component must beat (see module docstring).
        min_gain: relative deviance drop an extra component must beat.
        presence_deviance: deviance rise above which a component is present in a sample (module docstring).
        background_terms: Chebyshev terms of each sample's background.
        rounds: alternations between the NMF and the background fits.
        bin_points: consecutive points summed before demixing (fewer points, same Poisson statistics).
        seed: NMF initialisation seed (``nndsvda`` is deterministic; the seed only breaks ties).
        counts_per_unit: how many counts one unit of the intensities stands for (1 for counts); None infers it
            from the noise (:func:`counting_scale`), so max-normalised or per-second patterns demix like counts.

    Raises:
        ValueError: if the patterns are not on one grid.
    """
    if isinstance(patterns, np.ndarray):
        if two_theta_deg is None:
            raise ValueError("give two_theta_deg with an array of counts")
        x, counts = np.asarray(two_theta_deg, dtype=np.float64), np.asarray(patterns, dtype=np.float64)
    else:
        x = patterns[0].two_theta_deg
        if any(p.two_theta_deg.shape != x.shape or not np.allclose(p.two_theta_deg, x) for p in patterns):
            raise ValueError("demixing needs every pattern on the same 2θ grid; rebin them first")
        counts = np.stack([p.counts for p in patterns])
    scale = counts_per_unit if counts_per_unit is not None else counting_scale(counts)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"counts_per_unit must be a positive number, got {scale}")
    counts = counts * scale
    if bin_points > 1:
        usable = (x.size // bin_points) * bin_points
        x = x[:usable].reshape(-1, bin_points).mean(axis=1)
        counts = counts[:, :usable].reshape(counts.shape[0], -1, bin_points).sum(axis=2)
    basis = _chebyshev_basis(x, background_terms)
    n_samples, n_points = counts.shape
    max_components = min(max_components, n_samples - 1)
    fits, deviance = [], []
    chosen = 1
    for k in range(1, max_components + 1):
        fits.append(_fit_with_background(counts, basis, k, rounds, seed))
        deviance.append(fits[-1][3])
        if k == 1:
            continue
        gain = deviance[k - 2] - deviance[k - 1]
        if gain > significance * (n_samples + n_points) and gain > min_gain * deviance[k - 2]:
            chosen = k
        else:
            break
    w, h, backgrounds, _ = fits[chosen - 1]
    peak = np.maximum(h.max(axis=1, keepdims=True), 1e-12)
    components = h / peak
    intensity = w * h.sum(axis=1)[None, :]
    shares = intensity / np.maximum(intensity.sum(axis=1, keepdims=True), 1e-12)
    model = w @ h + backgrounds
    significance = np.zeros_like(w)
    for s in range(n_samples):
        base = poisson_deviance(counts[s], model[s])
        for k in range(chosen):
            significance[s, k] = poisson_deviance(counts[s], model[s] - w[s, k] * h[k]) - base
    present = [tuple(int(k) for k in np.flatnonzero(row > presence_deviance)) for row in significance]
    region_components = sorted(set(present), key=lambda combo: (len(combo), combo))
    regions = np.array([region_components.index(combo) for combo in present], dtype=np.int64)
    return Demixing(
        chosen, x, components, shares, significance, regions, region_components, deviance, backgrounds / scale, scale
    )
