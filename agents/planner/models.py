"""Surrogate models: Gaussian processes fitted to told outcomes in the encoded input space."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
from botorch.exceptions.warnings import InputDataWarning, OptimizationWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import ModelListGP, SingleTaskGP, SingleTaskVariationalGP
from botorch.models.gp_regression_mixed import MixedSingleTaskGP
from botorch.models.model import Model
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import (
    get_covar_module_with_dim_scaled_prior,
    get_gaussian_likelihood_with_lognormal_prior,
)
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import Kernel, MaternKernel, ScaleKernel
from gpytorch.likelihoods import BernoulliLikelihood, GaussianLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood, SumMarginalLogLikelihood, VariationalELBO
from gpytorch.priors import GammaPrior
from torch import Tensor

from agents.planner.errors import SpecError

__all__ = ["KERNELS", "OutcomeData", "continuous_kernel", "fit_feasibility_model", "fit_outcome_model"]

KERNELS = ("rbf", "matern52")
"""Continuous kernels of the outcome GPs (`continuous_kernel`)."""

_MIN_YVAR = 1e-10


@dataclass(frozen=True)
class OutcomeData:
    """Training data of one modelled outcome.

    Args:
        name: Outcome name (model output order follows the list passed to `fit_outcome_model`).
        X: An ``n x d`` tensor of encoded inputs.
        Y: An ``n x 1`` tensor of observed values, original units.
        Yvar: An ``n x 1`` tensor of observation noise variances (squared original units), or ``None`` to
            infer a homoscedastic noise level.
    """

    name: str
    X: Tensor
    Y: Tensor
    Yvar: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.X.shape[0]
        if self.X.ndim != 2 or self.Y.shape != (n, 1):
            raise SpecError(f"outcome {self.name!r}: need X `n x d` and Y `n x 1`, got {self.X.shape}, {self.Y.shape}")
        if self.Yvar is not None and self.Yvar.shape != (n, 1):
            raise SpecError(f"outcome {self.name!r}: Yvar must be `n x 1`, got {tuple(self.Yvar.shape)}")
        if n == 0:
            raise SpecError(f"outcome {self.name!r} has no observations to learn from")


def fit_outcome_model(
    data: Sequence[OutcomeData],
    cat_dims: Sequence[int] = (),
    feasibility: Model | None = None,
    min_noise: float | None = None,
    kernel: str = "rbf",
) -> Model:
    """Fit one GP per outcome and return them as a single ``m``-output model.

    Outcomes are standardised (``Standardize``, which also rescales ``Yvar``), so posteriors come back in
    original units. When every outcome is observed at the same inputs and all or none carry variances, a
    single batched multi-output GP is fitted (cheaper posteriors); otherwise a ``ModelListGP``. Categorical
    columns use ``MixedSingleTaskGP``'s categorical kernel.

    Args:
        data: ``m`` outcome data sets, in output order.
        cat_dims: Encoded columns that are categorical.
        feasibility: A fitted single-output model appended as the last output (see `fit_feasibility_model`).
        min_noise: Floor on the inferred noise variance (standardised units) of outcomes given without
            variances; ``None`` keeps BoTorch's ``1e-4``. That floor is 1 % of the outcome's standard deviation
            as a noise standard deviation: with values spanning 0.4 to 300 (Branin), differences near the
            optimum below ~0.3 are modelled as noise.
        kernel: The continuous kernel: ``"rbf"`` (BoTorch's default) or ``"matern52"`` (the classic ARD Matern-5/2
            with an outputscale), see `continuous_kernel`.

    Returns:
        A fitted model whose ``posterior(X)`` for ``X`` of shape ``b x q x d`` has ``m`` (``+ 1``) outputs.
    """
    if not data:
        raise SpecError("nothing to model")
    if kernel not in KERNELS:
        raise SpecError(f"kernel must be one of {list(KERNELS)}, got {kernel!r}")
    cat_dims = list(cat_dims)
    aligned = (
        all(od.X.shape == data[0].X.shape and torch.equal(od.X, data[0].X) for od in data)
        and len({od.Yvar is None for od in data}) == 1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputDataWarning)
        warnings.simplefilter("ignore", OptimizationWarning)
        if aligned:
            Y = torch.cat([od.Y for od in data], dim=-1)
            Yvar = None
            if data[0].Yvar is not None:
                Yvar = torch.cat([od.Yvar for od in data], -1)  # type: ignore[misc]
            model = _single(data[0].X, Y, Yvar, cat_dims, min_noise, kernel)
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
            return model if feasibility is None else ModelListGP(model, feasibility)
        models = [_single(od.X, od.Y, od.Yvar, cat_dims, min_noise, kernel) for od in data]
        model_list = ModelListGP(*models)
        fit_gpytorch_mll(SumMarginalLogLikelihood(model_list.likelihood, model_list))
        return model_list if feasibility is None else ModelListGP(*models, feasibility)


def fit_feasibility_model(X: Tensor, success: Tensor, max_inducing: int = 128) -> Model:
    """A GP classifier of experiment success: a variational GP with a Bernoulli (probit) likelihood.

    Its output is the latent ``f(x)``; ``P(success | x) = Phi(f(x))``, so ``f > 0`` marks the region expected to
    work. Inducing points are the training inputs (up to ``max_inducing``, chosen greedily by variance reduction).

    Args:
        X: An ``n x d`` tensor of encoded inputs of every told experiment.
        success: An ``n x 1`` tensor, 1.0 where the experiment worked and 0.0 where it failed.
    """
    n = X.shape[0]
    inducing: Tensor | int = X.clone() if n <= max_inducing else max_inducing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputDataWarning)
        warnings.simplefilter("ignore", OptimizationWarning)
        # An outputscale lets the latent grow well beyond +-2 where every experiment failed (or worked): the
        # unscaled default caps P(success) near Phi(-2) however many failures are seen.
        covar = ScaleKernel(
            get_covar_module_with_dim_scaled_prior(ard_num_dims=X.shape[-1]), outputscale_prior=GammaPrior(2.0, 0.15)
        )
        model = SingleTaskVariationalGP(
            X,
            success,
            likelihood=BernoulliLikelihood(),
            covar_module=covar,
            inducing_points=inducing,
            learn_inducing_points=False,
        )
        fit_gpytorch_mll(VariationalELBO(model.likelihood, model.model, num_data=n))
    return model


def continuous_kernel(
    kernel: str,
    ard_num_dims: int,
    batch_shape: torch.Size | None = None,
    active_dims: Sequence[int] | None = None,
) -> Kernel:
    """The kernel of the continuous columns.

    - ``"rbf"``: BoTorch's default (`get_covar_module_with_dim_scaled_prior`): an ARD RBF kernel, no outputscale,
      a dimension-scaled LogNormal lengthscale prior (Hvarfner et al., 2024) that favours smooth responses;
    - ``"matern52"``: the classic GP-ARD Matern-5/2 of pool-based materials benchmarks (Liang et al., 2021) and of
      BoTorch before 0.12: ``ScaleKernel(MaternKernel(nu=2.5))`` with Gamma(3, 6) lengthscale and Gamma(2, 0.15)
      outputscale priors, which lets a rugged response keep short lengthscales.

    Its signature after ``kernel`` is that of ``MixedSingleTaskGP``'s ``cont_kernel_factory``.
    """
    if kernel == "rbf":
        return get_covar_module_with_dim_scaled_prior(
            ard_num_dims=ard_num_dims, batch_shape=batch_shape, use_rbf_kernel=True, active_dims=active_dims
        )
    base = MaternKernel(
        nu=2.5,
        ard_num_dims=ard_num_dims,
        batch_shape=batch_shape,
        active_dims=None if active_dims is None else tuple(active_dims),
        lengthscale_prior=GammaPrior(3.0, 6.0),
    )
    return ScaleKernel(base, batch_shape=batch_shape, outputscale_prior=GammaPrior(2.0, 0.15))


def _single(
    X: Tensor,
    Y: Tensor,
    Yvar: Tensor | None,
    cat_dims: list[int],
    min_noise: float | None = None,
    kernel: str = "rbf",
) -> SingleTaskGP:
    if Yvar is not None:
        Yvar = Yvar.clamp_min(_MIN_YVAR)
    transform = Standardize(m=Y.shape[-1])
    likelihood = None if Yvar is not None or min_noise is None else _inferred_noise(Y.shape[-1], min_noise)
    if cat_dims:
        factory = None if kernel == "rbf" else partial(continuous_kernel, kernel)  # None: BoTorch's own (RBF)
        return MixedSingleTaskGP(
            X,
            Y,
            cat_dims=cat_dims,
            train_Yvar=Yvar,
            cont_kernel_factory=factory,
            likelihood=likelihood,
            outcome_transform=transform,
        )
    model = SingleTaskGP(X, Y, train_Yvar=Yvar, likelihood=likelihood, outcome_transform=transform)
    if kernel != "rbf":
        # Swapped in after construction (same batch shape) so the model keeps BoTorch's
        # bookkeeping for its default kernel (``subset_output``); "rbf" is that default, untouched.
        batch_shape = torch.Size([Y.shape[-1]]) if Y.shape[-1] > 1 else torch.Size()
        model.covar_module = continuous_kernel(kernel, X.shape[-1], batch_shape).to(X)
    return model


def _inferred_noise(m: int, min_noise: float) -> GaussianLikelihood:
    """BoTorch's default likelihood for inferred noise (a LogNormal(-4, 1) prior), with the floor ``min_noise``."""
    likelihood = get_gaussian_likelihood_with_lognormal_prior(torch.Size([m]) if m > 1 else None)
    prior_mode = float(likelihood.noise_covar.noise_prior.mode)
    floor = GreaterThan(min_noise, transform=None, initial_value=max(prior_mode, min_noise))
    likelihood.noise_covar.register_constraint("raw_noise", floor)
    return likelihood
