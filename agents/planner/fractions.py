"""Fractions (phase weight fractions, yields) modelled on the logit scale.

A weight fraction lives in ``[0, 1]`` and often switches like a sigmoid across a transition: JMAK kinetics give
``f = 1 - exp(-(k t)^n)``, which climbs from 0.003 to 0.997 within about 120 K of anneal temperature and is flat
on either side. A stationary GP fitted to the raw fraction needs a short lengthscale for the step and then reverts
to its mean on the plateaus, so it stays unsure that a hotter anneal is all rutile even after several such samples.
On the logit scale the step is a ramp about twice as wide. The plateaus, where a few tenths of a per cent cannot
be told apart, get large variances by the delta rule, so they no longer pin the GP.

Values are clamped to ``[FRACTION_FLOOR, 1 - FRACTION_FLOOR]`` first: a measured fraction may come out slightly
below 0 or above 1 through noise, and 0.1 wt% is about the detection limit of a laboratory powder pattern.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from agents.planner.errors import SpecError

__all__ = [
    "FRACTION_FLOOR",
    "fraction_logit",
    "fraction_logit_variance",
    "inverse_fraction_logit",
    "inverse_fraction_logit_std",
    "logit_of_bound",
]

FRACTION_FLOOR = 1e-3


def _clamped(y: Tensor) -> Tensor:
    return y.clamp(FRACTION_FLOOR, 1.0 - FRACTION_FLOOR)


def fraction_logit(y: Tensor) -> Tensor:
    """``log(p / (1 - p))`` of the clamped fractions ``p``, elementwise."""
    p = _clamped(y)
    return torch.log(p) - torch.log1p(-p)


def fraction_logit_variance(y: Tensor, variance: Tensor) -> Tensor:
    """The variance of `fraction_logit` for an observation ``y`` of variance ``variance``: ``var / (p (1 - p))^2``
    at the clamped ``p`` (delta rule)."""
    p = _clamped(y)
    return variance / (p * (1.0 - p)) ** 2


def inverse_fraction_logit(z: Tensor) -> Tensor:
    """The fraction at logit ``z`` (the median of a Gaussian on the logit scale)."""
    return torch.sigmoid(z)


def inverse_fraction_logit_std(z: Tensor, std: Tensor) -> Tensor:
    """A standard deviation on the logit scale at ``z`` carried back to a fraction (delta rule)."""
    p = torch.sigmoid(z)
    return std * p * (1.0 - p)


def logit_of_bound(name: str, value: float, what: str) -> float:
    """A bound, target or reference ``value`` of fraction outcome ``name`` on the logit scale.

    Raises:
        SpecError: ``value`` lies outside ``[FRACTION_FLOOR, 1 - FRACTION_FLOOR]``, where the clamped logit cannot
            tell it from the limit (and every fraction meets ``<= 1``, none ``>= 1``).
    """
    if not FRACTION_FLOOR <= value <= 1.0 - FRACTION_FLOOR:
        raise SpecError(
            f"{what} {value!r} of fraction outcome {name!r} must lie between {FRACTION_FLOOR} and "
            f"{1.0 - FRACTION_FLOOR} (fractions are modelled on the logit scale, clamped at 0.1 wt%)"
        )
    return math.log(value) - math.log1p(-value)
