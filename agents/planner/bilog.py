"""The bilog transform of a constrained outcome around its bound, as Ax's ``BilogY`` (Eriksson & Poloczek 2021).

``f(y) = b + sign(y - b) log(1 + |y - b|)`` magnifies the neighbourhood of the bound ``b`` and compresses values
far from it, so the GP spends its flexibility where feasibility is decided (a phase fraction jumping from 0 to 1
across a transition temperature becomes a smaller step). ``f(b) = b`` and ``f`` is increasing, so the constraint
``y <= b`` reads the same on the transformed scale. Variances follow the first-order (delta) rule.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["bilog", "bilog_variance", "inverse_bilog", "inverse_bilog_std"]


def bilog(y: Tensor, bound: float) -> Tensor:
    """``b + sign(y - b) log1p(|y - b|)``, elementwise."""
    d = y - bound
    return bound + torch.sign(d) * torch.log1p(d.abs())


def bilog_variance(y: Tensor, variance: Tensor, bound: float) -> Tensor:
    """The variance of ``bilog(y)`` for an observation ``y`` of variance ``variance``: ``var / (1 + |y - b|)^2``."""
    return variance / (1.0 + (y - bound).abs()) ** 2


def inverse_bilog(z: Tensor, bound: float) -> Tensor:
    """``b + sign(z - b) expm1(|z - b|)``, the inverse of `bilog`."""
    d = z - bound
    return bound + torch.sign(d) * torch.expm1(d.abs())


def inverse_bilog_std(z: Tensor, std: Tensor, bound: float) -> Tensor:
    """A standard deviation on the bilog scale at ``z`` carried back to original units (delta rule)."""
    return std * torch.exp((z - bound).abs())
