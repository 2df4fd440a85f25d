"""Measured readings as arrays and as files other programs read: powder patterns as ``.xye`` text and as NeXus.

``.xye``: three columns, 2θ in degrees, counts, and σ of the counts (counting statistics, ``sqrt(max(counts, 1))``,
the weights the whole-pattern fit uses), after ``#`` comment lines that give the wavelength(s) first, then the
counting time: the form :func:`analysis.readers.read_pattern` (and GSAS-II, TOPAS, FullProf) reads.

NeXus (HDF5, ``.nxs``): ``/entry`` (``NXentry``) holds ``data`` (``NXdata``: signal ``counts``, axis
``two_theta``, their ``counts_errors``, also linked as ``errors``, each dataset with its ``units``), ``instrument``
(``NXinstrument``, with ``monochromator``, an ``NXmonochromator`` whose ``wavelength`` is Kα1 in Å, and the Kα2
line and ratio when the radiation has one; ``detector``, an ``NXdetector`` with ``count_time``) and ``sample``
(``NXsample``: its name and the experiment's conditions, with units where known).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from instruments.readings import Diffractogram, Reading

__all__ = [
    "counting_sigma",
    "read_nexus",
    "read_xye",
    "reading_arrays",
    "write_nexus",
    "write_xye",
]


def counting_sigma(counts: NDArray[np.float64]) -> NDArray[np.float64]:
    """One standard deviation of detector counts from counting statistics: ``sqrt(max(counts, 1))``."""
    return np.sqrt(np.maximum(np.asarray(counts, dtype=np.float64), 1.0))


def reading_arrays(reading: Reading) -> dict[str, NDArray[np.float64]]:
    """The arrays of a reading by their names (each name carries its unit: ``two_theta_deg``, ``q_inv_angstrom``),
    copied; a diffractogram's also holds ``sigma``, the counts' standard deviation (:func:`counting_sigma`)."""
    arrays = {
        f.name: np.array(getattr(reading, f.name), dtype=np.float64)
        for f in fields(reading)  # type: ignore[arg-type]
        if isinstance(getattr(reading, f.name), np.ndarray)
    }
    if isinstance(reading, Diffractogram):
        arrays["sigma"] = counting_sigma(reading.counts)
    return arrays


# --- .xye ----------------------------------------------------------------------------------------------------
def _wavelength_line(pattern: Diffractogram) -> str:
    if pattern.wavelength_ka2_angstrom is None:
        return f"# wavelength: {pattern.wavelength_angstrom!r} (angstrom, monochromatic)"
    return (
        f"# wavelength: {pattern.wavelength_angstrom!r} {pattern.wavelength_ka2_angstrom!r} {pattern.ka2_ratio!r} "
        "(angstrom: K-alpha one, K-alpha two; their intensity ratio)"
    )


def write_xye(path: str | Path, pattern: Diffractogram, title: str | None = None) -> Path:
    """Write ``pattern`` as an ``.xye`` file (2θ in degrees, counts, σ) and return its path.

    The wavelength line comes first (a reader takes the first line that names the radiation), then the counting
    time, ``title`` (e.g. which campaign, experiment and step measured it) and the columns. Numbers are written to
    full precision, so :func:`read_xye` gives back the very arrays."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [_wavelength_line(pattern), f"# counting time: {pattern.counting_time_s!r} s per step"]
    if title:
        lines.append(f"# {' '.join(title.split())}")
    if pattern.sample_id:
        lines.append(f"# sample: {pattern.sample_id}")
    lines.append("# columns: 2theta (degrees), counts, sigma (counts)")
    sigma = counting_sigma(pattern.counts)
    lines += [
        f"{float(x)!r} {float(y)!r} {float(s)!r}"
        for x, y, s in zip(pattern.two_theta_deg, pattern.counts, sigma, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


_XYE_WAVELENGTH = re.compile(r"^#\s*wavelength:\s*(.*)$", re.IGNORECASE)
_XYE_TIME = re.compile(r"^#\s*counting time:\s*(\S+)", re.IGNORECASE)
_XYE_SAMPLE = re.compile(r"^#\s*sample:\s*(\S+)", re.IGNORECASE)


def read_xye(path: str | Path) -> tuple[Diffractogram, NDArray[np.float64]]:
    """Read an ``.xye`` file :func:`write_xye` wrote: the pattern (radiation and counting time from its header)
    and its σ column."""
    path = Path(path)
    radiation: list[float] = []
    counting_time_s, sample_id = 1.0, None
    rows: list[list[float]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            if line.strip():
                rows.append([float(token) for token in line.split()])
            continue
        if (match := _XYE_WAVELENGTH.match(line)) and not radiation:
            radiation = [float(token) for token in match.group(1).split("(")[0].split()]
        elif match := _XYE_TIME.match(line):
            counting_time_s = float(match.group(1))
        elif match := _XYE_SAMPLE.match(line):
            sample_id = match.group(1)
    if not radiation:
        raise ValueError(f"{path}: no '# wavelength:' line")
    table = np.array(rows, dtype=np.float64).reshape(-1, 3)
    pattern = Diffractogram(
        two_theta_deg=table[:, 0],
        counts=table[:, 1],
        wavelength_angstrom=radiation[0],
        wavelength_ka2_angstrom=radiation[1] if len(radiation) > 1 else None,
        ka2_ratio=radiation[2] if len(radiation) > 2 else 0.5,
        counting_time_s=counting_time_s,
        sample_id=sample_id,
    )
    return pattern, table[:, 2]


# --- NeXus ---------------------------------------------------------------------------------------------------
def _group(parent: Any, name: str, nx_class: str) -> Any:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def _dataset(group: Any, name: str, value: Any, units: str | None = None) -> Any:
    dataset = group.create_dataset(name, data=value)
    if units:
        dataset.attrs["units"] = units
    return dataset


def write_nexus(
    path: str | Path,
    pattern: Diffractogram,
    *,
    title: str | None = None,
    conditions: Mapping[str, Any] | None = None,
    units: Mapping[str, str] | None = None,
) -> Path:
    """Write ``pattern`` as a NeXus/HDF5 file (see the module's docstring for its layout) and return its path.

    Args:
        title: ``/entry/title``, e.g. which campaign, experiment and step measured it.
        conditions: the sample's synthesis conditions, written into ``/entry/sample`` (numbers and text).
        units: the conditions' units by name, as each dataset's ``units`` attribute.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    units = units or {}
    with h5py.File(path, "w") as nexus:
        nexus.attrs["default"] = "entry"
        nexus.attrs["creator"] = "crucible"
        nexus.attrs["NX_class"] = "NXroot"
        entry = _group(nexus, "entry", "NXentry")
        entry.attrs["default"] = "data"
        if title:
            entry.create_dataset("title", data=title)
        data = _group(entry, "data", "NXdata")
        data.attrs["signal"] = "counts"
        data.attrs["axes"] = "two_theta"
        data.attrs["two_theta_indices"] = 0
        _dataset(data, "two_theta", pattern.two_theta_deg, "degrees").attrs["long_name"] = "2θ (degrees)"
        _dataset(data, "counts", pattern.counts, "counts").attrs["long_name"] = "counts"
        _dataset(data, "counts_errors", counting_sigma(pattern.counts), "counts")
        data["errors"] = data["counts_errors"]  # the older NeXus name of the signal's errors: the same dataset
        instrument = _group(entry, "instrument", "NXinstrument")
        monochromator = _group(instrument, "monochromator", "NXmonochromator")
        _dataset(monochromator, "wavelength", pattern.wavelength_angstrom, "angstrom")
        if pattern.wavelength_ka2_angstrom is not None:
            _dataset(monochromator, "wavelength_ka2", pattern.wavelength_ka2_angstrom, "angstrom")
            _dataset(monochromator, "ka2_ratio", pattern.ka2_ratio)
        detector = _group(instrument, "detector", "NXdetector")
        _dataset(detector, "count_time", pattern.counting_time_s, "s")
        sample = _group(entry, "sample", "NXsample")
        if pattern.sample_id:
            sample.create_dataset("name", data=pattern.sample_id)
        for name, value in (conditions or {}).items():
            if isinstance(value, int | float | str) and not isinstance(value, bool):
                _dataset(sample, name, value, units.get(name))
        if pattern.metadata:
            entry.create_dataset("crucible_metadata", data=json.dumps(pattern.metadata))
    return path


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_nexus(path: str | Path) -> tuple[Diffractogram, NDArray[np.float64]]:
    """Read a NeXus file :func:`write_nexus` wrote: the pattern and its ``counts_errors``."""
    import h5py

    with h5py.File(path, "r") as nexus:
        entry = nexus[_text(nexus.attrs.get("default", "entry"))]
        data = entry[_text(entry.attrs.get("default", "data"))]
        monochromator = entry["instrument/monochromator"]
        ka2 = monochromator.get("wavelength_ka2")
        sample = entry.get("sample")
        name = sample.get("name") if sample is not None else None
        pattern = Diffractogram(
            two_theta_deg=data[_text(data.attrs["axes"])][()],
            counts=data[_text(data.attrs["signal"])][()],
            wavelength_angstrom=float(monochromator["wavelength"][()]),
            wavelength_ka2_angstrom=None if ka2 is None else float(ka2[()]),
            ka2_ratio=float(monochromator["ka2_ratio"][()]) if "ka2_ratio" in monochromator else 0.5,
            counting_time_s=float(entry["instrument/detector/count_time"][()]),
            sample_id=None if name is None else _text(name[()]),
            metadata=json.loads(_text(entry["crucible_metadata"][()])) if "crucible_metadata" in entry else {},
        )
        return pattern, data["counts_errors"][()]
