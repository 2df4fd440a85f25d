"""``crucible train``: simulate a scenario's powder patterns and train the network ensemble that analyses them.

The one place where the simulated lab (data) meets :mod:`analysis.ml` (model): ``sim_lab.datasets`` draws samples
and their unit-weight phase signals, this module puts them on the network's grid and hands them to
:func:`analysis.ml.training.train_ensemble`. The saved model needs neither ``sim_lab`` nor this module to load.

Also runnable on its own: ``python -m flows.training tio2_calcination --out analysis/weights --n-patterns 8000
--epochs 24 --seed 0 --members 5`` (what made the shipped weights).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.ml.ensemble import ModelCard
from analysis.ml.preprocess import PatternGrid, rebin
from analysis.ml.training import ComponentSet, Mixing, TrainingConfig, train_ensemble
from sim_lab.datasets import (
    DEFAULT_DIFFRACTOMETER,
    Nuisance,
    SamplePrior,
    free_lattice_names,
    iter_components,
    scenario_phases,
)
from sim_lab.xrd import PowderDiffractometer

__all__ = ["component_set", "model_card", "train"]

VALIDATION_FRACTION = 0.1


def component_set(
    scenario: str,
    n: int,
    seed: int,
    grid: PatternGrid,
    prior: SamplePrior,
    nuisance: Nuisance,
    diffractometer: PowderDiffractometer = DEFAULT_DIFFRACTOMETER,
) -> ComponentSet:
    """``n`` simulated samples of ``scenario`` as a :class:`ComponentSet` on ``grid`` (unit signals in float32)."""
    x = diffractometer.two_theta_deg
    signals, lattices, sizes = [], [], []
    for sample in iter_components(scenario, n, seed, prior, nuisance, diffractometer):
        signals.append(rebin(x, sample.unit_signals, grid).astype(np.float32))
        lattices.append([value for phase in sample.lattice_angstrom for value in phase.values()])
        sizes.append(sample.crystallite_size_nm)
    n_terms = 1 + len(nuisance.background_shape)
    basis = np.stack(
        [
            rebin(x, replace(diffractometer, background_chebyshev=tuple(np.eye(n_terms)[k])).background(), grid)
            for k in range(n_terms)
        ]
    )
    return ComponentSet(
        unit_signals=torch.from_numpy(np.stack(signals)),
        lattice_angstrom=torch.tensor(np.array(lattices), dtype=torch.float32),
        size_nm=torch.tensor(np.array(sizes), dtype=torch.float32),
        background_basis=torch.tensor(basis, dtype=torch.float32),
        flux=diffractometer.flux,
    )


def model_card(
    scenario: str, grid: PatternGrid, diffractometer: PowderDiffractometer, members: int, provenance: dict[str, Any]
) -> ModelCard:
    """The card of an ensemble for ``scenario`` before training fills in standardisation and calibration."""
    phases = scenario_phases(scenario)
    return ModelCard(
        scenario=scenario,
        phases=list(phases),
        lattice=[(name, axis) for name, structure in phases.items() for axis in free_lattice_names(structure)],
        grid=grid.as_dict(),
        wavelength_angstrom=diffractometer.wavelength_angstrom,
        wavelength_ka2_angstrom=diffractometer.wavelength_ka2_angstrom,
        ka2_ratio=diffractometer.ka2_ratio,
        lattice_mean_angstrom=[],
        lattice_std_angstrom=[],
        log_size_mean=0.0,
        log_size_std=1.0,
        channels=(),
        hidden=0,
        n_members=members,
        provenance=provenance,
    )


def train(
    scenario: str,
    out: Path,
    n_patterns: int,
    epochs: int,
    seed: int,
    members: int = 5,
    log: Callable[[str], None] = print,
) -> Path:
    """Simulate ``n_patterns`` samples of ``scenario``, train a ``members``-network ensemble, save it into ``out``.

    Ten percent of the samples (at least 32) are held out to calibrate the ensemble's uncertainties. Each epoch
    redraws fractions, backgrounds and noise for every sample (:mod:`analysis.ml.training`).

    Returns:
        The path of the model card ``out/<scenario>.json`` (weights in ``out/<scenario>.pt``).
    """
    started = time.perf_counter()
    prior, nuisance, diffractometer = SamplePrior(), Nuisance(), DEFAULT_DIFFRACTOMETER
    grid = PatternGrid.pairs_of(diffractometer.two_theta_deg)
    n_validation = max(int(round(n_patterns * VALIDATION_FRACTION)), 32)
    log(f"simulating {n_patterns} + {n_validation} samples of {scenario} ...")
    train_set = component_set(scenario, n_patterns, seed, grid, prior, nuisance, diffractometer)
    validation_set = component_set(scenario, n_validation, seed + 1_000_003, grid, prior, nuisance, diffractometer)
    generation_s = time.perf_counter() - started
    log(f"simulated in {generation_s:.0f} s")
    arguments = (
        f"{shlex.quote(scenario)} --out {shlex.quote(str(out))} --n-patterns {n_patterns} --epochs {epochs} "
        f"--seed {seed} --members {members}"
    )
    card = model_card(
        scenario,
        grid,
        diffractometer,
        members,
        provenance={
            "command": f"crucible train {arguments}",
            "module_command": f"python -m flows.training {arguments}",
            "scenario": scenario,
            "seed": seed,
            "n_patterns": n_patterns,
            "n_validation": n_validation,
            "epochs": epochs,
            "members": members,
            "sample_prior": asdict(prior),
            "nuisance": asdict(nuisance),
            "instrument": {
                "caglioti_uvw_deg2": [
                    diffractometer.caglioti_u_deg2,
                    diffractometer.caglioti_v_deg2,
                    diffractometer.caglioti_w_deg2,
                ],
                "flux": diffractometer.flux,
                "step_deg": diffractometer.step_deg,
            },
            "generation_seconds": round(generation_s, 1),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    )
    mixing = Mixing(
        pure_probability=prior.pure_probability,
        counting_time_s=nuisance.counting_time_s,
        background_level=nuisance.background_level,
        background_shape=nuisance.background_shape,
    )
    config = TrainingConfig(members=members, epochs=epochs, seed=seed)
    ensemble = train_ensemble(card, train_set, validation_set, mixing, config, log)
    provenance = dict(ensemble.card.provenance)
    provenance["total_seconds"] = round(time.perf_counter() - started, 1)
    ensemble.card = replace(ensemble.card, provenance=provenance)
    path = ensemble.save(Path(out), scenario)
    log(f"saved {path} and {path.with_suffix('.pt')} in {provenance['total_seconds']:.0f} s")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario")
    parser.add_argument("--out", type=Path, default=Path("analysis/weights"))
    parser.add_argument("--n-patterns", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--members", type=int, default=5)
    args = parser.parse_args(argv)
    train(args.scenario, args.out, args.n_patterns, args.epochs, args.seed, args.members)


if __name__ == "__main__":
    main(sys.argv[1:])
