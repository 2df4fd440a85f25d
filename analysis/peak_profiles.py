"""Peak profiles and the fast rendering of many reflections onto a 2θ grid.

Profiles are pseudo-Voigt functions with the Thompson-Cox-Hastings (TCH) mixing of a Gaussian and a Lorentzian
FWHM, made asymmetric as a split pseudo-Voigt: the low-angle half is wider by ``1 + a`` and the high-angle half
narrower by ``1 - a`` (axial divergence; ``a`` falls as ``1 / tan 2θ`` and changes sign at 90°). Each profile
integrates to one over 2θ in degrees and peaks at its reflection's position.

:func:`render` places every reflection as a stick on a (finely resampled) uniform grid and convolves the sticks
of each few-degree segment of the pattern with the profile at that segment's angle (neighbouring segments blended
linearly), so the cost is a few FFTs per pattern rather than one profile per reflection and point. The profile
widths change by a few per cent across a segment; the blend keeps the error of that far below counting noise.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy.fft import irfft, next_fast_len, rfft

__all__ = ["pseudo_voigt_tch", "split_pseudo_voigt", "render", "WidthsAt", "TAIL_FWHMS"]

TAIL_FWHMS = 40.0
"""How far a profile reaches either side of its peak, in FWHMs (the Lorentzian tail beyond holds ~1 % of area)."""

_SEGMENT_DEG = 8.0
_MAX_OVERSAMPLE = 8

WidthsAt = Callable[[NDArray[np.float64]], tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]]
"""2θ (deg) -> (Gaussian FWHM, Lorentzian FWHM, asymmetry ``a``) at those angles."""


def _tch(gaussian: NDArray[np.float64], lorentzian: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray]:
    g, lo = gaussian, lorentzian
    fwhm = (
        g**5 + 2.69269 * g**4 * lo + 2.42843 * g**3 * lo**2 + 4.47163 * g**2 * lo**3 + 0.07842 * g * lo**4 + lo**5
    ) ** 0.2
    q = lo / fwhm
    eta = 1.36603 * q - 0.47719 * q**2 + 0.11116 * q**3
    return fwhm, eta


def pseudo_voigt_tch(
    offset_deg: NDArray[np.float64], gaussian_fwhm_deg: NDArray[np.float64], lorentzian_fwhm_deg: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Area-normalised TCH pseudo-Voigt (arrays broadcast), in 1/degree."""
    fwhm, eta = _tch(np.asarray(gaussian_fwhm_deg, float), np.asarray(lorentzian_fwhm_deg, float))
    x2 = (offset_deg / fwhm) ** 2
    gauss = (2.0 / fwhm) * np.sqrt(np.log(2) / np.pi) * np.exp(-4.0 * np.log(2) * x2)
    lorentz = (2.0 / (np.pi * fwhm)) / (1.0 + 4.0 * x2)
    return eta * lorentz + (1.0 - eta) * gauss


def split_pseudo_voigt(
    offset_deg: NDArray[np.float64],
    gaussian_fwhm_deg: NDArray[np.float64] | float,
    lorentzian_fwhm_deg: NDArray[np.float64] | float,
    asymmetry: NDArray[np.float64] | float,
) -> NDArray[np.float64]:
    """The TCH pseudo-Voigt with its low-angle half ``1 + a`` times wider and its high-angle half ``1 - a`` times
    narrower (``|a| < 1``); area one, maximum at offset 0, continuous there."""
    a = np.asarray(asymmetry, float)
    left = pseudo_voigt_tch(offset_deg, gaussian_fwhm_deg * (1.0 + a), lorentzian_fwhm_deg * (1.0 + a)) * (1.0 + a)
    right = pseudo_voigt_tch(offset_deg, gaussian_fwhm_deg * (1.0 - a), lorentzian_fwhm_deg * (1.0 - a)) * (1.0 - a)
    return np.where(offset_deg < 0.0, left, right)


def _uniform_step(x: NDArray[np.float64]) -> float | None:
    if x.size < 3:
        return None
    steps = np.diff(x)
    step = float(steps.mean())
    if step <= 0 or np.max(np.abs(steps - step)) > 1e-3 * step:
        return None
    return step


def render(
    two_theta_deg: NDArray[np.float64],
    centres_deg: NDArray[np.float64],
    intensities: NDArray[np.float64],
    widths_at: WidthsAt,
) -> NDArray[np.float64]:
    """``Σ_k I_k · profile(2θ − 2θ_k)`` on ``two_theta_deg``, the profile's widths given by ``widths_at``.

    Args:
        two_theta_deg: the `n` grid points (uniform for the fast path; any grid works).
        centres_deg: `m` reflection positions.
        intensities: `m` integrated intensities.
        widths_at: the profile's Gaussian and Lorentzian FWHM and asymmetry at any 2θ.
    """
    x = np.asarray(two_theta_deg, float)
    out = np.zeros_like(x)
    keep = (intensities != 0.0) & np.isfinite(centres_deg)
    centres, heights = centres_deg[keep], intensities[keep]
    if centres.size == 0:
        return out
    step = _uniform_step(x)
    if step is None:
        return _render_direct(x, centres, heights, widths_at)
    # a fine grid at least 8 points per narrowest FWHM, reaching TAIL_FWHMS beyond the data on each side
    g, lo, a = widths_at(np.clip(centres, x[0], x[-1]))
    fwhm, _ = _tch(g, lo)
    narrowest = float(np.min(fwhm * (1.0 - np.abs(a))))  # the narrow half of an asymmetric peak
    oversample = int(np.clip(np.ceil(8.0 * step / max(narrowest, 1e-6)), 1, _MAX_OVERSAMPLE))
    fine_step = step / oversample
    reach = TAIL_FWHMS * float(fwhm.max())
    margin = int(np.ceil(reach / fine_step))
    n_fine = (x.size - 1) * oversample + 1 + 2 * margin
    origin = x[0] - margin * fine_step
    inside = (centres > origin) & (centres < origin + (n_fine - 1) * fine_step)
    centres, heights = centres[inside], heights[inside]
    if centres.size == 0:
        return out
    # segments: nodes every few degrees; each stick shared between its two neighbouring nodes, and between the
    # two fine-grid points around it; every node's sticks convolved with that node's profile, all in one FFT
    nodes = _nodes(origin, origin + (n_fine - 1) * fine_step, widths_at)
    position = np.interp(centres, nodes, np.arange(nodes.size))
    left_node = np.minimum(np.floor(position).astype(int), nodes.size - 2)
    share_right = position - left_node
    fine_index = (centres - origin) / fine_step
    below = np.floor(fine_index).astype(int)
    above_share = fine_index - below
    used = np.unique(np.concatenate([left_node, left_node + 1]))
    row_of = np.full(nodes.size, -1)
    row_of[used] = np.arange(used.size)
    node_g, node_l, node_a = widths_at(np.clip(nodes[used], 1e-3, 179.999))
    node_fwhm, _ = _tch(node_g, node_l)
    half = int(min(np.ceil(TAIL_FWHMS * float(node_fwhm.max()) / fine_step), n_fine))
    n_fft = next_fast_len(n_fine + 2 * half + 1, real=True)
    rows = np.concatenate([row_of[left_node]] * 2 + [row_of[left_node + 1]] * 2)
    columns = np.concatenate([below, below + 1, below, below + 1])
    weights = np.concatenate([
        heights * (1.0 - share_right) * (1.0 - above_share),
        heights * (1.0 - share_right) * above_share,
        heights * share_right * (1.0 - above_share),
        heights * share_right * above_share,
    ])
    sticks = np.bincount(rows * n_fft + columns, weights=weights, minlength=used.size * n_fft)
    spectrum = np.einsum(
        "sk,sk->k", rfft(sticks.reshape(used.size, n_fft), axis=1), _kernel_spectra(node_g, node_l, node_a, half,
                                                                                      fine_step, n_fft)
    )
    fine = irfft(spectrum, n_fft)[:n_fine]
    return fine[margin : margin + (x.size - 1) * oversample + 1 : oversample]


def _nodes(lo_deg: float, hi_deg: float, widths_at: WidthsAt) -> NDArray[np.float64]:
    """Nodes from ``lo_deg`` to ``hi_deg``, at most ``_SEGMENT_DEG`` apart and closer where the profile changes
    faster: between neighbours the FWHM changes by at most 2 % and the asymmetry by at most 0.015."""
    candidates = np.linspace(lo_deg, hi_deg, max(int(np.ceil((hi_deg - lo_deg) / 0.25)), 1) + 1)
    g, lo, a = widths_at(np.clip(candidates, 1e-3, 179.999))
    fwhm, _ = _tch(g, lo)
    chosen = [0]
    for i in range(1, candidates.size):
        last = chosen[-1]
        if (
            candidates[i] - candidates[last] > _SEGMENT_DEG
            or abs(fwhm[i] / fwhm[last] - 1.0) > 0.02
            or abs(a[i] - a[last]) > 0.015
        ):
            chosen.append(max(i - 1, last + 1))
    if chosen[-1] != candidates.size - 1:
        chosen.append(candidates.size - 1)
    return candidates[np.array(chosen)]


_KERNELS: dict[bytes, NDArray[np.complex128]] = {}


def _kernel_spectra(
    g: NDArray[np.float64], lo: NDArray[np.float64], a: NDArray[np.float64], half: int, step: float, n_fft: int
) -> NDArray[np.complex128]:
    """The FFTs of the profiles at each node, sampled every ``step`` over ±``half`` points and wrapped for a
    circular convolution of length ``n_fft`` (cached: a refinement moving only positions reuses them)."""
    key = np.concatenate([g, lo, a, [half, step, n_fft]]).tobytes()
    cached = _KERNELS.get(key)
    if cached is not None:
        return cached
    offsets = np.arange(-half, half + 1) * step
    profiles = split_pseudo_voigt(offsets[None, :], g[:, None], lo[:, None], a[:, None])
    wrapped = np.zeros((g.size, n_fft))
    wrapped[:, : half + 1] = profiles[:, half:]
    wrapped[:, n_fft - half :] = profiles[:, :half]
    spectra = rfft(wrapped, axis=1)
    if len(_KERNELS) >= 64:
        _KERNELS.clear()
    _KERNELS[key] = spectra
    return spectra


def _render_direct(
    x: NDArray[np.float64], centres: NDArray[np.float64], heights: NDArray[np.float64], widths_at: WidthsAt
) -> NDArray[np.float64]:
    """The plain sum over reflections, each evaluated where it reaches (any grid)."""
    g, lo, a = widths_at(np.clip(centres, 1e-3, 179.999))
    fwhm, _ = _tch(g, lo)
    out = np.zeros_like(x)
    for k in range(centres.size):
        lo_i, hi_i = np.searchsorted(x, [centres[k] - TAIL_FWHMS * fwhm[k], centres[k] + TAIL_FWHMS * fwhm[k]])
        if lo_i < hi_i:
            out[lo_i:hi_i] += heights[k] * split_pseudo_voigt(x[lo_i:hi_i] - centres[k], g[k], lo[k], a[k])
    return out
