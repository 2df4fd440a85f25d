"""Training a deep ensemble of pattern networks on separable simulated components, redrawn at every step.

A powder pattern is linear in its phases' weight fractions and its background coefficients, and its noise is
Poisson: ``counts ~ Poisson(flux · t · (Σ_p w_p u_p + Σ_k c_k T_k))``, with ``u_p`` the signal of phase ``p`` at unit
weight fraction. Given the (expensive) unit signals of many simulated samples, every training step draws fresh
fractions, backgrounds, counting times and noise for its batch (cheap), so that each epoch sees new patterns. Members
fit the means alone (squared error) for the first fifth of the steps, then the β-NLL loss (Seitzer et al., ICLR 2022,
β = 0.5), which keeps heteroscedastic Gaussian regression from giving up on hard examples; they differ by
initialisation, batch order and the mixtures drawn. After training, the ensemble's standard deviations are scaled
per quantity on a held-out validation set (:func:`calibrate`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from analysis.ml.ensemble import Z_95, ModelCard, PowderEnsemble
from analysis.ml.network import NetworkOutput
from analysis.ml.preprocess import network_input

__all__ = ["ComponentSet", "Mixing", "TrainingConfig", "calibrate", "synthesise", "train_ensemble"]

# Lattice and size calibration (and the bench's errors) use the phases present at or above this weight fraction.
PRESENT_FRACTION = 0.05


@dataclass(frozen=True)
class ComponentSet:
    """Training material on the network's input grid (`N` samples, `P` phases, `L` lattice parameters, `m` bins).

    Attributes:
        unit_signals: `N x P x m` counts-per-second-per-flux of each phase at unit weight fraction.
        lattice_angstrom: `N x L` true free lattice parameters in Å.
        size_nm: `N x P` true crystallite sizes in nm.
        background_basis: `K x m` Chebyshev polynomials T_0 ... T_{K−1} of the instrument's background, binned.
        flux: the instrument's flux (counts per model unit per second of counting time).
    """

    unit_signals: torch.Tensor
    lattice_angstrom: torch.Tensor
    size_nm: torch.Tensor
    background_basis: torch.Tensor
    flux: float

    def __post_init__(self) -> None:
        n, p, m = self.unit_signals.shape
        if self.lattice_angstrom.shape[0] != n or self.size_nm.shape != (n, p):
            raise ValueError(
                f"unit_signals is {tuple(self.unit_signals.shape)} but lattice_angstrom is "
                f"{tuple(self.lattice_angstrom.shape)} and size_nm {tuple(self.size_nm.shape)}"
            )
        if self.background_basis.shape[1] != m:
            raise ValueError(f"background_basis has {self.background_basis.shape[1]} bins, unit_signals {m}")

    def __len__(self) -> int:
        return int(self.unit_signals.shape[0])


@dataclass(frozen=True)
class Mixing:
    """How fractions, backgrounds and noise are redrawn for each training pattern (see :class:`ComponentSet`).

    Attributes:
        pure_probability: probability of a single-phase pattern; otherwise fractions are uniform on the simplex.
        counting_time_s: (low, high) log-uniform counting time per step, s.
        background_level: (low, high) uniform constant Chebyshev coefficient c0.
        background_shape: bounds b_k of c_k / c0 ~ U(−b_k, b_k) for k = 1, 2, ...
    """

    pure_probability: float = 0.3
    counting_time_s: tuple[float, float] = (0.3, 3.0)
    background_level: tuple[float, float] = (0.5, 3.0)
    background_shape: tuple[float, ...] = (0.4, 0.25, 0.1)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings.

    Attributes:
        members: ensemble size.
        epochs: passes over the components (each with fresh mixtures).
        batch_size: patterns per step.
        learning_rate: peak AdamW learning rate (cosine decay after a short warm-up).
        beta: the β of the β-NLL loss.
        mse_warmup: fraction of the steps that first fit the means alone (squared error), before the β-NLL.
        seed: seeds member initialisation, batch order and the mixtures.
        channels, hidden, pool, norm: architecture (:class:`analysis.ml.network.PatternCNN`).
        threads: torch CPU threads.
    """

    members: int = 5
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 2e-3
    beta: float = 0.5
    mse_warmup: float = 0.2
    seed: int = 0
    channels: tuple[int, ...] = (16, 24, 32, 32, 32)
    hidden: int = 64
    pool: str = "stride"
    norm: bool = True
    threads: int = 1


def _draw_fractions(b: int, p: int, pure_probability: float, generator: torch.Generator) -> torch.Tensor:
    """`b x P` weight fractions: one-hot with probability ``pure_probability``, else Dirichlet(1, ..., 1)."""
    exponential = -torch.log(torch.rand(b, p, generator=generator).clamp_min(1e-12))
    fractions = exponential / exponential.sum(dim=1, keepdim=True)
    pure = torch.rand(b, generator=generator) < pure_probability
    one_hot = torch.nn.functional.one_hot(torch.randint(p, (b,), generator=generator), p).float()
    return torch.where(pure[:, None], one_hot, fractions)


def synthesise(
    components: ComponentSet, index: torch.Tensor, mixing: Mixing, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh noisy patterns from the components ``index`` (`b`).

    Returns:
        (`b x m` Poisson counts per bin, `b x P` the weight fractions drawn).
    """
    b, p = index.shape[0], components.unit_signals.shape[1]
    fractions = _draw_fractions(b, p, mixing.pure_probability, generator) if p > 1 else torch.ones(b, 1)
    low, high = mixing.background_level
    level = low + (high - low) * torch.rand(b, 1, generator=generator)
    bounds = torch.tensor(mixing.background_shape, dtype=torch.float32)
    shape = level * bounds * (2.0 * torch.rand(b, bounds.numel(), generator=generator) - 1.0)
    coefficients = torch.cat([level, shape], dim=1)
    basis = components.background_basis[: coefficients.shape[1]]
    log_low, log_high = math.log(mixing.counting_time_s[0]), math.log(mixing.counting_time_s[1])
    counting_time = torch.exp(log_low + (log_high - log_low) * torch.rand(b, 1, generator=generator))
    signal = torch.einsum("bp,bpm->bm", fractions, components.unit_signals[index]) + coefficients @ basis
    expected = components.flux * counting_time * signal
    return torch.poisson(expected.clamp_min(0.0), generator=generator), fractions


def _beta_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    variance = logvar.exp()
    nll = 0.5 * (logvar + (target - mean) ** 2 / variance)
    return (nll * variance.detach() ** beta).mean()


@dataclass(frozen=True)
class _Targets:
    fraction: torch.Tensor  # b x P
    lattice: torch.Tensor  # b x L, standardised
    log_size: torch.Tensor  # b x P, standardised


def _loss(output: NetworkOutput, targets: _Targets, beta: float, means_only: bool = False) -> torch.Tensor:
    if means_only:
        return (
            (output.fraction - targets.fraction).pow(2).mean() / 0.1
            + (output.lattice - targets.lattice).pow(2).mean()
            + (output.log_size - targets.log_size).pow(2).mean()
        )
    return (
        _beta_nll(output.fraction, output.fraction_logvar, targets.fraction, beta)
        + _beta_nll(output.lattice, output.lattice_logvar, targets.lattice, beta)
        + _beta_nll(output.log_size, output.log_size_logvar, targets.log_size, beta)
    )


def _targets(card: ModelCard, components: ComponentSet, index: torch.Tensor, fractions: torch.Tensor) -> _Targets:
    mean = torch.tensor(card.lattice_mean_angstrom)
    std = torch.tensor(card.lattice_std_angstrom)
    return _Targets(
        fraction=fractions,
        lattice=(components.lattice_angstrom[index] - mean) / std,
        log_size=(components.size_nm[index].log() - card.log_size_mean) / card.log_size_std,
    )


def calibrate(ensemble: PowderEnsemble, counts: torch.Tensor, fractions: torch.Tensor,
              lattice_angstrom: torch.Tensor, size_nm: torch.Tensor) -> dict[str, list[float]]:
    """Per-quantity factors that make the 95% intervals cover 95% of the validation truth.

    Each factor is the 0.95 quantile of |error| / std divided by z_0.975 = 1.96. Lattice parameters and sizes are
    calibrated on the phases present at ≥ 5 wt% (elsewhere they are not determined by the data).

    Args:
        counts: `b x m` validation patterns; fractions: `b x P`; lattice_angstrom: `b x L`; size_nm: `b x P`.
    """
    card = ensemble.card
    prediction = ensemble.predict_binned(counts, calibrated=False)
    truth_fraction = fractions.double().numpy()

    def factor(error: np.ndarray, std: np.ndarray) -> float:
        ratio = np.abs(error) / np.maximum(std, 1e-12)
        return float(np.quantile(ratio, 0.95) / Z_95) if ratio.size else 1.0

    fraction_scale = [factor(prediction.fraction[:, p] - truth_fraction[:, p], prediction.fraction_std[:, p])
                      for p in range(len(card.phases))]
    size_scale, lattice_scale = [], []
    for p in range(len(card.phases)):
        present = truth_fraction[:, p] >= PRESENT_FRACTION
        error = prediction.log_size[present, p] - np.log(size_nm[:, p].double().numpy()[present])
        size_scale.append(factor(error, prediction.log_size_std[present, p]))
    for k, (phase, _axis) in enumerate(card.lattice):
        present = truth_fraction[:, card.phases.index(phase)] >= PRESENT_FRACTION
        error = prediction.lattice_angstrom[present, k] - lattice_angstrom[:, k].double().numpy()[present]
        lattice_scale.append(factor(error, prediction.lattice_std_angstrom[present, k]))
    return {"fraction": fraction_scale, "lattice": lattice_scale, "size": size_scale}


def _warmup_cosine(total_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over the first 1/30 of the steps, then cosine decay to zero."""
    warmup = max(total_steps // 30, 1)

    def factor(step: int) -> float:
        return min((step + 1) / warmup, 0.5 * (1.0 + math.cos(math.pi * min(step / total_steps, 1.0))))

    return factor


def train_ensemble(
    card: ModelCard,
    train: ComponentSet,
    validation: ComponentSet,
    mixing: Mixing,
    config: TrainingConfig,
    log: Callable[[str], None] = print,
) -> PowderEnsemble:
    """Train ``config.members`` networks and calibrate their ensemble on ``validation``.

    Args:
        card: phases, lattice names, grid and radiation; standardisation, architecture and calibration are filled in.
        train, validation: component sets (disjoint simulated samples).
        mixing: how fresh patterns are drawn from components.
        config: optimisation settings.
        log: receives one line per member and epoch.

    Returns:
        The calibrated ensemble, with its training record in ``card.provenance["training"]``.
    """
    torch.set_num_threads(config.threads)
    log_size = train.size_nm.log()
    card = replace(
        card,
        lattice_mean_angstrom=train.lattice_angstrom.mean(dim=0).tolist(),
        lattice_std_angstrom=train.lattice_angstrom.std(dim=0).clamp_min(1e-6).tolist(),
        log_size_mean=float(log_size.mean()),
        log_size_std=float(log_size.std()),
        channels=tuple(config.channels),
        hidden=config.hidden,
        pool=config.pool,
        norm=config.norm,
        n_members=config.members,
    )
    validation_generator = torch.Generator().manual_seed(config.seed + 10_000)
    validation_index = torch.arange(len(validation))
    validation_counts, validation_fractions = synthesise(validation, validation_index, mixing, validation_generator)
    validation_x = network_input(validation_counts)
    validation_targets = _targets(card, validation, validation_index, validation_fractions)
    steps_per_epoch = max(len(train) // config.batch_size, 1)
    total_steps = steps_per_epoch * config.epochs
    members, record = [], []
    started = time.perf_counter()
    for m in range(config.members):
        torch.manual_seed(config.seed * 1000 + m)
        generator = torch.Generator().manual_seed(config.seed * 1000 + m)
        member = PowderEnsemble.build_member(card)
        optimiser = torch.optim.AdamW(member.parameters(), lr=config.learning_rate, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, _warmup_cosine(total_steps))
        for epoch in range(config.epochs):
            member.train()
            order = torch.randperm(len(train), generator=generator)
            running = 0.0
            for step in range(steps_per_epoch):
                index = order[step * config.batch_size : (step + 1) * config.batch_size]
                counts, fractions = synthesise(train, index, mixing, generator)
                means_only = epoch * steps_per_epoch + step < config.mse_warmup * total_steps
                output = member(*network_input(counts))
                loss = _loss(output, _targets(card, train, index, fractions), config.beta, means_only)
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(member.parameters(), 5.0)
                optimiser.step()
                schedule.step()
                running += loss.item()
            member.eval()
            with torch.inference_mode():
                validation_loss = float(_loss(member(*validation_x), validation_targets, config.beta))
            line = (f"member {m + 1}/{config.members} epoch {epoch + 1}/{config.epochs}: "
                    f"train {running / steps_per_epoch:.4f} validation {validation_loss:.4f} "
                    f"({time.perf_counter() - started:.0f} s)")
            log(line)
            record.append({"member": m, "epoch": epoch, "train_loss": running / steps_per_epoch,
                           "validation_loss": validation_loss})
        members.append(member)
    ensemble = PowderEnsemble(card, members)
    std_scale = calibrate(ensemble, validation_counts, validation_fractions, validation.lattice_angstrom,
                          validation.size_nm)
    provenance = dict(card.provenance)
    provenance["training"] = {
        "seconds": round(time.perf_counter() - started, 1),
        "train_samples": len(train),
        "validation_samples": len(validation),
        "config": {**config.__dict__, "channels": list(config.channels)},
        "mixing": mixing.__dict__,
        "final_validation_loss": [r["validation_loss"] for r in record if r["epoch"] == config.epochs - 1],
    }
    ensemble.card = replace(card, std_scale=std_scale, provenance=provenance)
    return ensemble
