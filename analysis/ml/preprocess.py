"""Turning diffractograms of any step into the fixed, normalised input grid a network was trained on.

Counts are rebinned, not interpolated: each measured point stands for a bin of its own step width, the cumulative
counts are interpolated at the network's bin edges and differenced. Counts are conserved, Poisson statistics are
preserved (a bin that holds whole measured points is their sum), and the same operation applied to a noise-free
model pattern gives the expected value of the rebinned measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = ["PatternGrid", "network_input", "rebin"]


@dataclass(frozen=True)
class PatternGrid:
    """A uniform grid of 2θ bins.

    Attributes:
        first_edge_deg: lower edge of the first bin, degrees 2θ.
        bin_deg: bin width in degrees.
        n_bins: number of bins.
    """

    first_edge_deg: float
    bin_deg: float
    n_bins: int

    @property
    def edges_deg(self) -> NDArray[np.float64]:
        """`n_bins + 1` bin edges in degrees 2θ."""
        return self.first_edge_deg + self.bin_deg * np.arange(self.n_bins + 1)

    @property
    def centres_deg(self) -> NDArray[np.float64]:
        """`n_bins` bin centres in degrees 2θ."""
        return self.first_edge_deg + self.bin_deg * (np.arange(self.n_bins) + 0.5)

    @classmethod
    def pairs_of(cls, two_theta_deg: NDArray[np.float64]) -> PatternGrid:
        """Bins that each hold two consecutive points of the uniform grid ``two_theta_deg`` (a trailing odd point is
        dropped)."""
        step = round(float(two_theta_deg[1] - two_theta_deg[0]), 9)
        return cls(round(float(two_theta_deg[0]) - step / 2, 9), 2 * step, int(two_theta_deg.size // 2))

    def as_dict(self) -> dict[str, float | int]:
        return {"first_edge_deg": self.first_edge_deg, "bin_deg": self.bin_deg, "n_bins": self.n_bins}


def rebin(two_theta_deg: NDArray[np.float64], counts: NDArray[np.float64], grid: PatternGrid) -> NDArray[np.float64]:
    """Counts per bin of ``grid`` from counts at increasing angles.

    Args:
        two_theta_deg: `n` increasing angles (any, possibly non-uniform, step) in degrees.
        counts: `... x n` counts (leading batch dimensions allowed).
        grid: the target bins; they must lie within the measured range (half a step beyond the ends allowed).

    Returns:
        `... x n_bins` counts per bin.

    Raises:
        ValueError: if the grid reaches beyond the measured range.
    """
    x = np.asarray(two_theta_deg, dtype=np.float64)
    mids = 0.5 * (x[1:] + x[:-1])
    sample_edges = np.concatenate([[x[0] - (mids[0] - x[0])], mids, [x[-1] + (x[-1] - mids[-1])]])
    edges = grid.edges_deg
    tolerance = 1e-6 * grid.bin_deg
    if edges[0] < sample_edges[0] - tolerance or edges[-1] > sample_edges[-1] + tolerance:
        raise ValueError(
            f"the pattern covers {x[0]:.3f}–{x[-1]:.3f}° 2θ but the network needs "
            f"{grid.centres_deg[0]:.3f}–{grid.centres_deg[-1]:.3f}°"
        )
    y = np.asarray(counts, dtype=np.float64)
    cumulative = np.concatenate([np.zeros((*y.shape[:-1], 1)), np.cumsum(y, axis=-1)], axis=-1)
    clipped = np.clip(edges, sample_edges[0], sample_edges[-1])
    # Linear interpolation of the cumulative counts at each target edge, vectorised over leading dimensions.
    index = np.clip(np.searchsorted(sample_edges, clipped, side="right") - 1, 0, sample_edges.size - 2)
    fraction = (clipped - sample_edges[index]) / (sample_edges[index + 1] - sample_edges[index])
    at_edges = cumulative[..., index] + fraction * (cumulative[..., index + 1] - cumulative[..., index])
    return np.diff(at_edges, axis=-1)


def network_input(binned: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's view of rebinned counts: shape in two channels, plus the count level.

    One implementation for training (on-the-fly synthetic batches) and inference.

    Args:
        binned: `b x m` counts per bin (``m`` = ``grid.n_bins``).

    Returns:
        (`b x 2 x m` channels ``counts / max`` and ``sqrt(counts / max)``, `b x 1` log10 of the maximum count).
        The square-root channel lifts weak peaks of minor phases; the level tells the network how noisy the
        pattern is, so its predicted variances can follow the counting statistics.
    """
    y = binned.clamp_min(0.0)
    peak = y.amax(dim=-1, keepdim=True).clamp_min(1.0)
    scaled = y / peak
    return torch.stack([scaled, scaled.sqrt()], dim=1), peak.log10()
