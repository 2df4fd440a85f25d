"""A small PQ-Net-style 1-D convolutional network: one pass from a powder pattern to fractions, lattices and sizes.

After Dong et al., "A deep convolutional neural network for real-time full profile analysis of big powder
diffraction data", npj Comput. Mater. 7, 74 (2021): convolution blocks that halve the length over the normalised
pattern, then dense layers and one head per quantity. By default the blocks are stride-2 convolutions with batch
normalisation: they keep the sub-bin information on peak positions (lattice parameters) that max-pooling discards,
and trained to about half the error of an unnormalised max-pooled stack for the same steps. Each head gives a
Gaussian mean and log-variance (heteroscedastic regression, Nix & Weigend 1994), so that an ensemble of such networks
(Lakshminarayanan et al. 2017) separates noise in the data from disagreement between members.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["NetworkOutput", "PatternCNN"]


class NetworkOutput(NamedTuple):
    """What one network says about a batch of `b` patterns (`P` phases, `L` free lattice parameters).

    Attributes:
        fraction: `b x P` weight fractions (softmax, rows sum to 1).
        fraction_logvar: `b x P` log-variance of each fraction.
        lattice: `b x L` standardised lattice parameters ((value − mean) / std of the training prior).
        lattice_logvar: `b x L` log-variance of the standardised lattice parameters.
        log_size: `b x P` standardised log crystallite sizes.
        log_size_logvar: `b x P` log-variance of the standardised log sizes.
    """

    fraction: torch.Tensor
    fraction_logvar: torch.Tensor
    lattice: torch.Tensor
    lattice_logvar: torch.Tensor
    log_size: torch.Tensor
    log_size_logvar: torch.Tensor


class PatternCNN(nn.Module):
    """Convolutional encoder with Gaussian heads.

    Args:
        n_bins: length `m` of the input grid.
        n_phases: number of phases `P`.
        n_lattice: number of free lattice parameters `L` over all phases.
        channels: output channels of the convolution blocks; each block halves the length (max-pooling).
        hidden: width of the dense layers.
        pool: how each block halves the length: ``"avg"`` or ``"max"`` pooling, or a stride-2 convolution
            (``"stride"``). Averaging keeps the sub-bin information on peak positions that max-pooling discards.
        norm: batch normalisation after each convolution.

    Shapes:
        ``forward(x, level)``: `x` is `b x 2 x m` (see :func:`analysis.ml.preprocess.network_input`), `level` is
        `b x 1` (log10 of the peak count); returns a :class:`NetworkOutput`.
    """

    def __init__(
        self,
        n_bins: int,
        n_phases: int,
        n_lattice: int,
        channels: tuple[int, ...] = (16, 24, 32, 32, 32),
        hidden: int = 64,
        pool: str = "stride",
        norm: bool = True,
    ) -> None:
        super().__init__()
        self.n_phases, self.n_lattice = n_phases, n_lattice
        blocks: list[nn.Module] = []
        previous, length = 2, n_bins
        for i, width in enumerate(channels):
            kernel = 7 if i == 0 else 5 if i < 3 else 3
            if pool == "stride":
                blocks.append(nn.Conv1d(previous, width, kernel, stride=2, padding=kernel // 2))
            else:
                blocks.append(nn.Conv1d(previous, width, kernel, padding=kernel // 2))
            if norm:
                blocks.append(nn.BatchNorm1d(width))
            blocks.append(nn.GELU())
            if pool == "max":
                blocks.append(nn.MaxPool1d(2))
            elif pool == "avg":
                blocks.append(nn.AvgPool1d(2))
            previous, length = width, (length + 1) // 2 if pool == "stride" else length // 2
        self.encoder = nn.Sequential(*blocks, nn.Flatten())
        self.dense = nn.Sequential(
            nn.Linear(previous * length + 1, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.head = nn.Linear(hidden, 4 * n_phases + 2 * n_lattice)

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> NetworkOutput:
        features = self.dense(torch.cat([self.encoder(x), level - 3.0], dim=1))
        p, q = self.n_phases, self.n_lattice
        out = self.head(features)
        logits, fraction_logvar, log_size, log_size_logvar, lattice, lattice_logvar = torch.split(
            out, [p, p, p, p, q, q], dim=1
        )
        return NetworkOutput(
            fraction=torch.softmax(logits, dim=1),
            fraction_logvar=fraction_logvar.clamp(-16.0, 4.0),
            lattice=lattice,
            lattice_logvar=lattice_logvar.clamp(-12.0, 4.0),
            log_size=log_size,
            log_size_logvar=log_size_logvar.clamp(-12.0, 4.0),
        )
