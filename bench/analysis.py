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

``--real DIR`` instead scores the whole-pattern fit on measured scans with weighed answers (the layout of
``../shared/real_xrd``: ``ground_truth.csv``, ``scans/``, ``cif/``; see :mod:`analysis.real_xrd`). Each scan is read
and fitted as ``crucible analyse SCAN --phase <one CIF per weighed phase>`` does (``analysis.readers.read_pattern``,
then ``XRDPhaseAgent.analyse``, the default instrument resolution), and the table gives per scan set the
weight-fraction MAE, the largest error, the share within 0.02 and 0.05, the 95 % coverage of the reported intervals,
the RMS z-score and the fit's seconds per scan, then one row per scan and phase. A full run fits 12 scans, the
8-minute ones with four times the points of the 2-minute ones; ``--limit N`` (the first N mixtures of
``ground_truth.csv``) and ``--scan-set`` make a quick run::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/analysis.py --real ../shared/real_xrd \
        [--limit N] [--scan-set 8min|2min|both] [--json-out rows.json]
"""

from __future__ import annotations

import os
import sys

_BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(name in os.environ for name in _BLAS_VARIABLES):  # must happen before numpy loads OpenBLAS
    env = {k: v for k, v in os.environ.items() if k not in _BLAS_VARIABLES}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
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

from agents.xrd_phase_agent import XRDPhaseAgent  # noqa: E402
from analysis.demixing import demix  # noqa: E402
from analysis.instrument_profile import InstrumentProfile  # noqa: E402
from analysis.ml import PowderEnsemble, load_ensemble  # noqa: E402
from analysis.ml.ensemble import WEIGHTS_DIR  # noqa: E402
from analysis.phase_identification import PhaseLibrary, identify_phases  # noqa: E402
from analysis.phase_quantification import FitOptions, Measurement, quantify_phases, radiation_of  # noqa: E402
from analysis.powder_model import load_reference_phase  # noqa: E402
from analysis.readers import MIN_POINTS_TO_ANALYSE, read_pattern  # noqa: E402
from analysis.real_xrd import SCAN_SETS, RealMixture, load_real_mixtures, score_fractions  # noqa: E402
from instruments.readings import Diffractogram  # noqa: E402
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

XRDPhaseAgentFactory = Callable[[list[Path]], XRDPhaseAgent]

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


REAL_PROFILE = "aeris"


def real_variants() -> dict[str, XRDPhaseAgentFactory]:
    """The fit with its defaults on the shipped Aeris profile, and with each correction off one at a time."""
    profile = InstrumentProfile.load(REAL_PROFILE)
    base = FitOptions(asymmetry=profile.asymmetry, fraction_model_error=profile.fraction_model_error)

    def agent(prof: InstrumentProfile | None, options: FitOptions | None) -> XRDPhaseAgentFactory:
        return lambda cifs: XRDPhaseAgent(cifs, instrument=prof, options=options)

    return {
        "default": agent(profile, base),
        "no anomalous dispersion": agent(profile, replace(base, anomalous=False)),
        "no asymmetry": agent(profile, replace(base, asymmetry=0.0)),
        "no Kβ line": agent(replace(profile, kbeta_ratio=0.0), base),
        "B refined per phase": agent(profile, replace(base, refine_b_iso=True, b_iso_angstrom2=0.5)),
        "Brindley, 2 µm grains": agent(profile, replace(base, particle_size_um=2.0)),
        "Brindley 2 µm, no anomalous": agent(profile, replace(base, particle_size_um=2.0, anomalous=False)),
        "no Bérar-Lelann": agent(profile, replace(base, correlation_correction=False)),
        "no instrument profile": agent(None, None),
    }


def fit_real_scan(
    mixture: RealMixture, scan_set: str, make_agent: XRDPhaseAgentFactory | None = None
) -> list[dict[str, object]]:
    """Read and fit one measured scan as ``crucible analyse SCAN --phase CIF ... --instrument aeris`` does; one row
    per weighed phase.

    ``seconds`` is the fit (:func:`quantify_phases` via the agent); ``setup_seconds`` the reading and the reference
    phases' reflection lists, which the CLI builds too but a campaign builds once.
    """
    path = mixture.scans[scan_set]
    started = time.perf_counter()
    pattern = read_pattern(path, None, min_points=MIN_POINTS_TO_ANALYSE)  # as agents.analysis_agents.analyse_file
    agent = (make_agent or real_variants()["default"])(list(mixture.cifs.values()))
    radiation = radiation_of(pattern)
    if agent.instrument is not None:
        radiation = agent.instrument.radiation_for(radiation)
    references = agent.references_for(radiation, float(pattern.two_theta_deg[-1]))
    fitting = time.perf_counter()
    failure, warnings = None, ()
    try:
        report = agent.analyse(pattern)
        quantities, warnings = report.quantities, report.warnings
    except Exception as error:  # a fit that fails on one scan is a result of the bench, not the end of it
        quantities, failure = {}, f"{type(error).__name__}: {error}"
    done = time.perf_counter()
    nan = Measurement(math.nan, math.nan)
    rows = []
    for (phase, true), reference in zip(mixture.fractions.items(), references, strict=True):
        fitted = quantities.get(f"{reference.name}_fraction", nan)
        rows.append({
            "scan_set": scan_set, "sample": mixture.sample, "file": path.name, "phase": phase,
            "reference": reference.name, "true": true, "fitted": fitted.value, "std": fitted.std,
            "std_statistical": fitted.std_statistical,
            "error": fitted.value - true, "rwp": quantities.get("rwp", nan).value,
            "zero_shift_deg": quantities.get("zero_shift_deg", nan).value,
            "seconds": done - fitting, "setup_seconds": fitting - started, "failure": failure,
            "warnings": list(warnings),
        })
    return rows


def _json_safe(value: object) -> object:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _real_scan_line(row: dict[str, object]) -> str:
    fitted = f"{row['fitted']:.4f} ± {row['std']:.4f}"
    return (f"  {row['scan_set']:<5} {row['sample']:<40} {row['phase']:<8} {row['true']:>7.4f} {fitted:>17} "
            f"{row['std_statistical']:>7.4f} {row['error']:>+8.4f} {row['rwp']:>7.4f} {row['zero_shift_deg']:>+8.4f} "
            f"{row['seconds']:>6.1f}")


def _statistical(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{**r, "std": r["std_statistical"]} for r in rows]


def real_table(
    directory: Path, limit: int | None, scan_sets: list[str], json_out: Path | None, variants: list[str] | None
) -> None:
    """Fit every scan of the first ``limit`` mixtures with the default fit (per-scan rows printed) and with each
    correction off, then print the scores per variant and scan set."""
    mixtures = load_real_mixtures(directory)[:limit]
    available = real_variants()
    chosen = variants or list(available)
    print(f"real scans: {directory} ({len(mixtures)} mixtures; scan sets {', '.join(scan_sets)}); instrument profile "
          f"{REAL_PROFILE!r}, one reference CIF per weighed phase; std = total (with the profile's model error), "
          "stat = statistical only\n")
    print(f"  {'set':<5} {'sample':<40} {'phase':<8} {'true':>7} {'fitted ± std':>17} {'stat':>7} {'error':>8} "
          f"{'Rwp':>7} {'zero(°)':>8} {'fit s':>6}")
    scores: dict[str, dict[str, dict[str, float]]] = {}
    all_rows: list[dict[str, object]] = []
    for variant in chosen:
        rows: list[dict[str, object]] = []
        for scan_set in scan_sets:
            for mixture in mixtures:
                scan_rows = fit_real_scan(mixture, scan_set, available[variant])
                rows += scan_rows
                if variant == chosen[0]:
                    for row in scan_rows:
                        print(_real_scan_line(row), flush=True)
                    for warning in scan_rows[0]["warnings"]:
                        print(f"    warning: {warning}", flush=True)
                if scan_rows[0]["failure"]:
                    print(f"    {variant}: fit failed: {scan_rows[0]['failure']}", flush=True)
        all_rows += [{**r, "variant": variant} for r in rows]
        if json_out is not None:  # rewritten after every variant, so a long run that is stopped keeps its rows
            json_out.write_text(json.dumps([{k: _json_safe(v) for k, v in r.items()} for r in all_rows], indent=1))
        for scan_set in scan_sets:
            own = [r for r in rows if r["scan_set"] == scan_set]
            score = score_fractions(own)
            score["coverage_95_statistical"] = score_fractions(_statistical(own))["coverage_95"]
            scores.setdefault(variant, {})[scan_set] = score
        print(f"  ... {variant}: " + ", ".join(
            f"{s} MAE {scores[variant][s]['mae']:.4f}" for s in scan_sets), flush=True)
    print()
    header = ["variant"] + [f"{s} {k}" for s in scan_sets for k in ("MAE", "max", "≤.02", "≤.05", "cov tot",
                                                                      "cov stat", "s med", "s mean")]
    print("  ".join(f"{h:>9}" if i else f"{h:<26}" for i, h in enumerate(header)))
    for variant in chosen:
        cells = [variant]
        for scan_set in scan_sets:
            sc = scores[variant][scan_set]
            cells += [f"{sc['mae']:.4f}", f"{sc['max_abs_error']:.4f}", f"{sc['within_0.02']:.3f}",
                      f"{sc['within_0.05']:.3f}", f"{sc['coverage_95']:.3f}", f"{sc['coverage_95_statistical']:.3f}",
                      f"{sc['median_seconds']:.1f}", f"{sc['mean_seconds']:.1f}"]
        print("  ".join(f"{c:>9}" if i else f"{c:<26}" for i, c in enumerate(cells)))
    default = [r for r in all_rows if r["variant"] == chosen[0]]
    print(f"\nmodel error c for 95 % total coverage of '{chosen[0]}' (std² = stat² + c² w(1 − w)): "
          f"{calibrated_model_error(default):.4f}")
    if json_out is not None:
        print(f"\nrows written to {json_out}")


def sim_like_table(directory: Path, scan_set: str, png_dir: Path | None) -> None:
    """Each mixture's real scan and a simulated scan of it (``sim_lab.real_like``), refitted with the same model:
    Rwp side by side. A simulator as hard as reality gives a ratio near 1."""
    from sim_lab.real_like import simulate_real_mixture

    profile = InstrumentProfile.load(REAL_PROFILE)
    rng = np.random.default_rng(1)
    print(f"\nsimulated vs real {scan_set} scans, both refitted with the default fit and profile {REAL_PROFILE!r}\n")
    print(f"  {'sample':<40} {'Rwp real':>9} {'Rwp sim':>9} {'Rexp':>7} {'real/sim':>9}  sim fraction errors")
    ratios: list[float] = []
    simulated_rows: list[dict[str, object]] = []
    for index, mixture in enumerate(load_real_mixtures(directory)):
        real = read_pattern(mixture.scans[scan_set], None, min_points=MIN_POINTS_TO_ANALYSE)
        fit = XRDPhaseAgent(list(mixture.cifs.values()), instrument=profile).analyse(real).details
        simulated = simulate_real_mixture(real, mixture.cifs, mixture.fractions, fit, profile, rng)
        refit = XRDPhaseAgent(list(mixture.cifs.values()), instrument=profile).analyse(simulated).details
        errors = " ".join(f"{p.weight_fraction.value - true:+.3f}"
                          for true, p in zip(mixture.fractions.values(), refit.phases, strict=True))
        ratios.append(fit.rwp / refit.rwp)
        for true, phase in zip(mixture.fractions.values(), refit.phases, strict=True):
            measurement = phase.weight_fraction
            simulated_rows.append({"file": mixture.sample, "true": true, "fitted": measurement.value,
                                   "std": measurement.std, "std_statistical": measurement.std_statistical,
                                   "seconds": 0.0})
        print(f"  {mixture.sample:<40} {fit.rwp:>9.4f} {refit.rwp:>9.4f} {fit.rexp:>7.4f} {ratios[-1]:>9.2f}  {errors}",
              flush=True)
        if png_dir is not None and index == 0:
            _plot_real_and_simulated(real, simulated, mixture.sample, png_dir / f"real-vs-simulated-{scan_set}.png")
    total, statistical = score_fractions(simulated_rows), score_fractions(_statistical(simulated_rows))
    print(f"\n  simulated scans: fraction MAE {total['mae']:.4f}, 95 % coverage {total['coverage_95']:.3f} (total "
          f"intervals), {statistical['coverage_95']:.3f} (statistical only)")
    inside = sum(1 / 1.3 <= r <= 1.3 for r in ratios)
    print(f"\n  {inside} of {len(ratios)} within 1.3x; simulated at least as hard (real/sim <= 1.3): "
          f"{sum(r <= 1.3 for r in ratios)} of {len(ratios)}")


def _plot_real_and_simulated(real: Diffractogram, simulated: Diffractogram, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(13, 7), gridspec_kw={"width_ratios": [3, 1]})
    for row, (pattern, label) in enumerate(((real, "measured (Aeris, 8 min)"), (simulated, "simulated"))):
        for column, window in enumerate(((10.0, 100.0), (24.0, 38.0))):
            axis = axes[row][column]
            keep = (pattern.two_theta_deg >= window[0]) & (pattern.two_theta_deg <= window[1])
            axis.plot(pattern.two_theta_deg[keep], pattern.counts[keep], lw=0.6, color="k" if row == 0 else "C0")
            axis.set_xlim(*window)
            axis.set_title(f"{label}: {title}" if column == 0 else "detail", fontsize=9)
            axis.set_xlabel("2θ (deg)")
            axis.set_ylabel("counts")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"  picture: {path}")


def calibrated_model_error(rows: list[dict[str, object]]) -> float:
    """The smallest c for which 95 % of the true fractions fall within 1.96 sqrt(stat² + c² w (1 − w))."""
    usable = [r for r in rows if math.isfinite(float(r["fitted"])) and math.isfinite(float(r["std_statistical"]))]
    for c in np.arange(0.0, 0.5, 0.0005):
        inside = [abs(float(r["error"])) <= 1.96 * math.hypot(
            float(r["std_statistical"]), c * math.sqrt(max(float(r["fitted"]) * (1 - float(r["fitted"])), 0.0)))
            for r in usable]
        if usable and np.mean(inside) >= 0.95:
            return float(c)
    return math.nan


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
    parser.add_argument("--real", type=Path, metavar="DIR",
                        help="instead: score the fit on measured scans with weighed answers (DIR/ground_truth.csv)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="--real: the first N mixtures only")
    parser.add_argument("--scan-set", choices=(*SCAN_SETS, "both"), default="both", help="--real: which scans")
    parser.add_argument("--json-out", type=Path, metavar="FILE", help="--real: write the per-scan rows as JSON")
    parser.add_argument("--sim-like", action="store_true",
                        help="--real: also simulate every mixture as the real instrument measures it and compare Rwp")
    parser.add_argument("--png-dir", type=Path, default=None, help="--sim-like: where to save the side-by-side plot")
    parser.add_argument("--variant", action="append", default=None,
                        help="--real: only these fit variants (repeatable; default: all)")
    args = parser.parse_args()
    if args.real is None and (args.limit is not None or args.json_out is not None or args.scan_set != "both"):
        parser.error("--limit, --scan-set and --json-out go with --real DIR")
    torch.set_num_threads(1)
    print(f"BLAS: {blas_summary()}")
    unset = ", ".join(f"{name}={os.environ.get(name)}" for name in _BLAS_VARIABLES)
    print(f"{unset}; torch {torch.__version__}, {torch.get_num_threads()} thread")
    if args.real is not None:
        with threadpool_limits(1):
            print(f"BLAS limited to: {blas_summary()}\n")
            if args.sim_like:
                sim_like_table(args.real, "8min" if args.scan_set == "both" else args.scan_set, args.png_dir)
                return
            real_table(args.real, args.limit, list(SCAN_SETS) if args.scan_set == "both" else [args.scan_set],
                       args.json_out, args.variant)
        return
    scenarios = args.scenario or [p.stem for p in sorted(WEIGHTS_DIR.glob("*.json")) if p.stem in SCENARIOS]
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
