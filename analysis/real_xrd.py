"""Measured powder mixtures with weighed answers (a ``ground_truth.csv``, scans, one CIF per phase) and the scoring
of fitted weight fractions against them.

The layout is that of the real-XRD development set (``../shared/real_xrd`` beside the project): ``ground_truth.csv``
with columns ``sample``, ``file_8min``, ``file_2min``, ``n_phases``, ``phase<i>`` and ``wt<i>_norm`` (weighed
fractions normalised to sum 1); the scans in ``scans/``; the references in ``cif/``, named by ``cif/phases.csv``
(columns ``label``, ``file``) or, without it, as ``cif/<phase>_*.cif``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SCAN_SETS", "Z95", "RealMixture", "load_real_mixtures", "score_fractions"]

#: The scan sets of a mixture: the ``file_<set>`` columns of ``ground_truth.csv``.
SCAN_SETS = ("8min", "2min")
#: Two-sided 95 % quantile of the standard normal distribution.
Z95 = 1.959963984540054


@dataclass(frozen=True)
class RealMixture:
    """One weighed mixture.

    Attributes:
        sample: the mixture's name.
        scans: ``{scan set: scan file}`` (``"8min"``, ``"2min"``).
        fractions: ``{phase: weighed weight fraction}`` (normalised to sum 1), in the order of the table.
        cifs: ``{phase: reference CIF}``.
    """

    sample: str
    scans: dict[str, Path]
    fractions: dict[str, float]
    cifs: dict[str, Path]


def _cif_files(cif_dir: Path) -> dict[str, Path]:
    """``{phase label: CIF}`` from ``phases.csv``, checked to exist."""
    table = cif_dir / "phases.csv"
    if not table.exists():
        return {}
    with table.open(newline="", encoding="utf-8") as handle:
        found = {row["label"].strip(): cif_dir / row["file"].strip() for row in csv.DictReader(handle)}
    missing = [str(path) for path in found.values() if not path.exists()]
    if missing:
        raise ValueError(f"{table} names CIF files that do not exist: {', '.join(missing)}")
    return found


def _cif_for(phase: str, cif_dir: Path, listed: Mapping[str, Path]) -> Path:
    if phase in listed:
        return listed[phase]
    candidates = sorted(cif_dir.glob(f"{phase}_*.cif")) or sorted(cif_dir.glob(f"{phase}.cif"))
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise ValueError(f"phase {phase!r}: not in {cif_dir / 'phases.csv'} and {found} CIF files match in {cif_dir}")
    return candidates[0]


def load_real_mixtures(directory: str | Path) -> list[RealMixture]:
    """The mixtures of ``directory/ground_truth.csv`` with their scan files and reference CIFs (see module docs).

    Raises:
        ValueError: for a scan or CIF file that does not exist, or fractions that do not sum to 1.
    """
    directory = Path(directory)
    listed = _cif_files(directory / "cif")
    mixtures = []
    with (directory / "ground_truth.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            sample = row["sample"].strip()
            phases = range(1, int(row["n_phases"]) + 1)
            fractions = {row[f"phase{i}"].strip(): float(row[f"wt{i}_norm"]) for i in phases}
            if abs(sum(fractions.values()) - 1.0) > 0.002:
                raise ValueError(f"{sample}: weight fractions sum to {sum(fractions.values()):.4f}, not 1")
            scans = {s: directory / "scans" / row[f"file_{s}"].strip() for s in SCAN_SETS if row.get(f"file_{s}")}
            absent = [str(path) for path in scans.values() if not path.exists()]
            if absent:
                raise ValueError(f"{sample}: no scan file {', '.join(absent)}")
            cifs = {phase: _cif_for(phase, directory / "cif", listed) for phase in fractions}
            mixtures.append(RealMixture(sample, scans, fractions, cifs))
    return mixtures


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def score_fractions(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Scores of fitted weight fractions against the truth.

    Args:
        rows: one per phase and scan, with ``true``, ``fitted``, ``std`` (the fit's one-sigma), ``seconds`` (the
            scan's analysis time, repeated on each of its rows) and ``file`` (or ``sample``) plus optionally
            ``scan_set`` naming the scan. A fitted or std value that is missing or not finite is allowed.

    Returns:
        ``n_scans``, ``n_values``, ``n_missing`` (no finite fitted value), ``mae`` and ``max_abs_error`` (over the
        finite ones), ``within_0.02`` and ``within_0.05`` (share of all values with |error| at most that; a missing
        value misses), ``coverage_95`` (share with |error| <= 1.96 std; no finite std misses), ``rms_z`` (root mean
        square of error / std over values with a finite positive std), ``n_no_std``, ``median_seconds`` and
        ``mean_seconds`` (per scan). NaN where nothing is there to average.
    """
    rows = list(rows)
    errors, covered, z_scores, seconds = [], [], [], {}
    for row in rows:
        true, fitted, std = row["true"], row.get("fitted"), row.get("std")
        error = abs(fitted - true) if _finite(fitted) else math.nan
        errors.append(error)
        has_std = _finite(std) and std >= 0
        covered.append(bool(has_std and error <= Z95 * std))
        if has_std and std > 0 and math.isfinite(error):
            z_scores.append(error / std)
        scan = (row.get("scan_set"), row.get("file", row.get("sample")))
        if scan not in seconds and _finite(row.get("seconds")):
            seconds[scan] = float(row["seconds"])
    values = np.array(errors, dtype=float)
    finite = values[np.isfinite(values)]
    nan = math.nan

    def share(hit: np.ndarray) -> float:
        return float(np.mean(hit)) if values.size else nan

    times = np.array(list(seconds.values()), dtype=float)
    return {
        "n_scans": len({(row.get("scan_set"), row.get("file", row.get("sample"))) for row in rows}),
        "n_values": len(rows),
        "n_missing": int(values.size - finite.size),
        "mae": float(np.mean(finite)) if finite.size else nan,
        "max_abs_error": float(np.max(finite)) if finite.size else nan,
        "within_0.02": share(np.nan_to_num(values, nan=np.inf) <= 0.02),
        "within_0.05": share(np.nan_to_num(values, nan=np.inf) <= 0.05),
        "coverage_95": share(np.array(covered, dtype=bool)),
        "rms_z": float(np.sqrt(np.mean(np.square(z_scores)))) if z_scores else nan,
        "n_no_std": len(rows) - len(z_scores) - int(values.size - finite.size),
        "median_seconds": float(np.median(times)) if times.size else nan,
        "mean_seconds": float(np.mean(times)) if times.size else nan,
    }
