"""Benchmark of the analysis agents on held-out simulated patterns: the whole-pattern fit and the network, side by side.

For each scenario with shipped network weights (``analysis/weights/<scenario>.json``) two held-out sets of patterns
are measured end to end by the simulated diffractometer (``sim_lab.datasets.measured_set``, seeds disjoint from
training): an in-distribution set (the training nuisances) and a shifted set (noise, background and zero shift drawn
wider than in training, ``Nuisance.shifted()``). Both methods analyse every pattern, on one CPU thread each (BLAS
and torch), and the table gives:

- fraction MAE: mean |w − w_true| over all phases and patterns;
- lattice MAE (Å) and size error (%, mean |D − D_true| / D_true): over phases present at ≥ 5 wt%;
- 95% coverage: share of true values inside value ± 1.96 std (fractions, lattices and sizes pooled; per kind below);
- patterns/s, and the network's speed-up.

Then the open-set test of phase identification (TiO2 patterns with and without brookite or monoclinic ZrO2, library
anatase, rutile and four decoys) and NMF demixing of a simulated ternary composition spread.

Run (the OpenBLAS variables some machines set select a slower kernel; the bench re-executes itself without them)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/analysis.py [--n 2000] [--fit-n N]
"""

from __future__ import annotations

import os
import sys

_BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(name in os.environ for name in _BLAS_VARIABLES):  # must happen before numpy loads OpenBLAS
    env = {k: v for k, v in os.environ.items() if k not in _BLAS_VARIABLES}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

# This file is called analysis.py: make sure "analysis" means the package, not this script.
_ROOT = str(Path(__file__).resolve().parents[1])
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from analysis.demixing import demix  # noqa: E402
from analysis.ml import PowderEnsemble, load_ensemble  # noqa: E402
from analysis.ml.ensemble import WEIGHTS_DIR  # noqa: E402
from analysis.phase_identification import PhaseLibrary, identify_phases  # noqa: E402
from analysis.phase_quantification import Measurement, quantify_phases, radiation_of  # noqa: E402
from analysis.powder_model import load_reference_phase  # noqa: E402
from sim_lab import phases as sim_phases  # noqa: E402
from sim_lab.datasets import (  # noqa: E402
    MeasuredSample,
    Nuisance,
    baddeleyite,
    brookite,
    decoy_phases,
    measured_set,
    scenario_phases,
    ternary_spread,
)
from sim_lab.scenarios import SCENARIOS  # noqa: E402

PRESENT = 0.05
Z95 = 1.959963984540054
IN_DISTRIBUTION_SEED, SHIFTED_SEED = 20_251_001, 20_251_002


@dataclass
class Scores:
    """Figures of one method on one set."""

    fraction_mae: float
    lattice_mae_angstrom: float
    size_error_pct: float
    coverage: float
    coverage_by_kind: dict[str, float]
    patterns_per_s: float
    missing: int


def score(found: list[dict[str, Measurement]], samples: list[MeasuredSample], phase_names: list[str],
          lattice: list[tuple[str, str]], seconds: float) -> Scores:
    """Errors and 95% coverage of ``found`` against the truth of ``samples`` (see module docstring)."""
    fraction_errors, lattice_errors, size_errors = [], [], []
    hits: dict[str, list[bool]] = {"fraction": [], "lattice": [], "size": []}
    missing = 0

    def check(kind: str, measured: Measurement, true: float) -> float | None:
        nonlocal missing
        if not (math.isfinite(measured.value) and math.isfinite(measured.std)):
            missing += 1
            hits[kind].append(False)
            return None
        hits[kind].append(abs(measured.value - true) <= Z95 * measured.std)
        return abs(measured.value - true)

    for quantities, sample in zip(found, samples, strict=True):
        truth = sample.quantities
        for phase in phase_names:
            error = check("fraction", quantities[f"{phase}_fraction"], truth[f"{phase}_fraction"])
            fraction_errors.append(np.nan if error is None else error)
            if truth[f"{phase}_fraction"] >= PRESENT:
                true_size = truth[f"{phase}_crystallite_size_nm"]
                error = check("size", quantities[f"{phase}_crystallite_size_nm"], true_size)
                if error is not None:
                    size_errors.append(error / true_size)
        for phase, axis in lattice:
            if truth[f"{phase}_fraction"] >= PRESENT:
                name = f"{phase}_{axis}_angstrom"
                error = check("lattice", quantities[name], truth[name])
                if error is not None:
                    lattice_errors.append(error)
    pooled = [hit for kind in hits.values() for hit in kind]
    return Scores(
        fraction_mae=float(np.nanmean(fraction_errors)),
        lattice_mae_angstrom=float(np.mean(lattice_errors)),
        size_error_pct=100.0 * float(np.mean(size_errors)),
        coverage=float(np.mean(pooled)),
        coverage_by_kind={kind: float(np.mean(values)) for kind, values in hits.items()},
        patterns_per_s=len(samples) / seconds,
        missing=missing,
    )


def run_fit(scenario: str, samples: list[MeasuredSample]) -> tuple[list[dict[str, Measurement]], float]:
    """The whole-pattern fit of every pattern against the scenario's nominal phases; returns quantities and seconds."""
    first = samples[0].pattern
    references = [load_reference_phase(structure, radiation_of(first), float(first.two_theta_deg[-1]), name=name)
                  for name, structure in scenario_phases(scenario).items()]
    calibration = first.metadata["calibration"]
    uvw = (calibration["caglioti_u_deg2"], calibration["caglioti_v_deg2"], calibration["caglioti_w_deg2"])
    started = time.perf_counter()
    found = [quantify_phases(sample.pattern, references, uvw).quantities() for sample in samples]
    return found, time.perf_counter() - started


def run_network(ensemble: PowderEnsemble, samples: list[MeasuredSample]) -> tuple[list[dict[str, Measurement]], float]:
    """The network's quantities for every pattern; the time (rebinning included) is the median of three passes, as
    one pass takes seconds and the machine is shared."""
    patterns = [sample.pattern for sample in samples]
    times = []
    for _ in range(3):
        started = time.perf_counter()
        prediction = ensemble.predict(patterns)
        times.append(time.perf_counter() - started)
    return [prediction.quantities(i) for i in range(len(samples))], float(np.median(times))


def _row(label: str, values: list[str]) -> str:
    return f"{label:<28}" + "".join(f"{v:>16}" for v in values)


def quantification_table(scenario: str, n: int, fit_n: int) -> None:
    ensemble = load_ensemble(scenario)
    card = ensemble.card
    columns, scores = [], []
    for label, nuisance, seed in (("in-dist", Nuisance(), IN_DISTRIBUTION_SEED),
                                  ("shifted", Nuisance.shifted(), SHIFTED_SEED)):
        started = time.perf_counter()
        samples = measured_set(scenario, n, seed, nuisance=nuisance)
        print(f"  {label}: simulated {n} patterns in {time.perf_counter() - started:.0f} s", flush=True)
        network_found, network_s = run_network(ensemble, samples)
        fit_samples = samples[:fit_n]
        fit_found, fit_s = run_fit(scenario, fit_samples)
        print(f"  {label}: fit {len(fit_samples)} patterns in {fit_s:.0f} s, network {n} in {network_s:.2f} s",
              flush=True)
        scores.append(score(fit_found, fit_samples, card.phases, card.lattice, fit_s))
        scores.append(score(network_found, samples, card.phases, card.lattice, network_s))
        columns += [f"fit {label}", f"net {label}"]
    print()
    print(f"scenario {scenario}: {n} patterns per set (fit on {min(fit_n, n)}), 1 thread each")
    print(_row("", columns))
    print(_row("fraction MAE", [f"{s.fraction_mae:.4f}" for s in scores]))
    print(_row("lattice MAE (Å)", [f"{s.lattice_mae_angstrom:.5f}" for s in scores]))
    print(_row("size error (%)", [f"{s.size_error_pct:.1f}" for s in scores]))
    print(_row("95% coverage (pooled)", [f"{s.coverage:.3f}" for s in scores]))
    for kind in ("fraction", "lattice", "size"):
        print(_row(f"  coverage {kind}", [f"{s.coverage_by_kind[kind]:.3f}" for s in scores]))
    print(_row("no value / no std", [str(s.missing) for s in scores]))
    print(_row("patterns / s", [f"{s.patterns_per_s:.1f}" for s in scores]))
    speedups = [scores[i + 1].patterns_per_s / scores[i].patterns_per_s for i in (0, 2)]
    print(_row("network speed-up", ["", f"{speedups[0]:.0f}x", "", f"{speedups[1]:.0f}x"]))
    print()


def open_set_table(n: int) -> None:
    library = PhaseLibrary({"anatase": sim_phases.anatase(), "rutile": sim_phases.rutile(), **decoy_phases()})
    unknown = {"brookite": brookite(), "ZrO2 (monoclinic)": baddeleyite()}
    print(f"open-set phase identification: library anatase, rutile + {', '.join(decoy_phases())}; "
          f"{n} patterns per row")
    print(_row("", ["flagged unknown", "top-2 correct", "s / pattern"]))
    for label, nuisance in (("in-dist", Nuisance()), ("shifted", Nuisance.shifted())):
        for kind, extra in (("known only", None), ("+ unknown 10-40 wt%", unknown),
                            ("+ unknown 3-10 wt%", unknown)):
            fractions = (0.03, 0.10) if "3-10" in kind else (0.10, 0.40)
            samples = measured_set("tio2_calcination", n, 31 + len(kind), nuisance=nuisance, unknown=extra,
                                   unknown_fraction=fractions)
            started = time.perf_counter()
            results = [identify_phases(s.pattern, library) for s in samples]
            seconds = (time.perf_counter() - started) / n
            flagged = np.mean([r.unknown_phase for r in results])
            correct = np.mean([
                {c.name for c in r.candidates[:2]} >= {p for p in ("anatase", "rutile")
                                                       if s.quantities[f"{p}_fraction"] >= 0.1}
                for r, s in zip(results, samples, strict=True)
            ])
            print(_row(f"{label} {kind}", [f"{flagged:.3f}", f"{correct:.3f}", f"{seconds:.2f}"]))
    print()


def demixing_table(divisions: int) -> None:
    structures = {"anatase": sim_phases.anatase(), "ZrO2": baddeleyite(), "ceria": decoy_phases()["ceria"]}
    print(f"NMF demixing of a ternary composition spread ({', '.join(structures)}; "
          f"{(divisions + 1) * (divisions + 2) // 2} samples)")
    print(_row("", ["true K", "found K", "regions right", "seconds"]))
    for seed, label in ((1, "1 s/step"), (2, "0.2 s/step")):
        counting = 1.0 if seed == 1 else 0.2
        spread = ternary_spread(structures, divisions, seed, counting_time_s=counting)
        started = time.perf_counter()
        result = demix([s.pattern for s in spread])
        seconds = time.perf_counter() - started
        truth = np.array([[s.weight_fraction[name] for name in structures] for s in spread])
        k = result.n_components
        similarity = np.corrcoef(np.c_[result.weights, truth].T)[:k, k:]
        rows, cols = linear_sum_assignment(-np.nan_to_num(similarity))
        mapping = {int(r): list(structures)[c] for r, c in zip(rows, cols, strict=True)}
        predicted = [frozenset(mapping.get(c, f"extra{c}") for c in result.region_components[g])
                     for g in result.regions]
        right = np.mean([p == s.phases_present for p, s in zip(predicted, spread, strict=True)])
        print(_row(label, ["3", str(k), f"{right:.3f}", f"{seconds:.1f}"]))
    print()


def blas_summary() -> str:
    parts = []
    for pool in threadpool_info():
        parts.append(f"{pool['internal_api']} {pool.get('version') or ''} "
                     f"{pool.get('architecture') or ''} ({pool['num_threads']} threads)".replace("  ", " "))
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description="fit vs network on held-out simulated patterns")
    parser.add_argument("--n", type=int, default=2000, help="held-out patterns per set and scenario")
    parser.add_argument("--fit-n", type=int, default=None, help="fit only the first N of them (default: all)")
    parser.add_argument("--scenario", action="append", help="scenario(s); default: every one with shipped weights")
    parser.add_argument("--open-set-n", type=int, default=50, help="patterns per open-set row (0 skips)")
    parser.add_argument("--spread-divisions", type=int, default=20, help="ternary spread grid (0 skips)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scenarios = args.scenario or [p.stem for p in sorted(WEIGHTS_DIR.glob("*.json")) if p.stem in SCENARIOS]
    print(f"BLAS: {blas_summary()}")
    unset = ", ".join(f"{name}={os.environ.get(name)}" for name in _BLAS_VARIABLES)
    print(f"{unset}; torch {torch.__version__}, {torch.get_num_threads()} thread")
    with threadpool_limits(1):
        print(f"BLAS limited to: {blas_summary()}\n")
        for scenario in scenarios:
            quantification_table(scenario, args.n, args.fit_n or args.n)
        if args.open_set_n:
            open_set_table(args.open_set_n)
        if args.spread_divisions:
            demixing_table(args.spread_divisions)


if __name__ == "__main__":
    main()
