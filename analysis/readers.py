"""Reading powder patterns as labs write them (.xy/.xye/.dat, CSV, Panalytical .xrdml) into :class:`Diffractogram` s.

The radiation comes from the file when it says (an .xrdml ``usedWavelength`` block; a comment line of a text file
such as ``# wavelength: 1.5406`` or ``# anode: Cu``) or is given explicitly, which wins over the file. Anode names
expand to their Kα1/Kα2 doublet with the usual 2:1 intensity ratio (Hölzer et al., Phys. Rev. A 56, 4554 (1997)).
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from analysis.powder_model import Radiation
from instruments.readings import Diffractogram

__all__ = ["ANODES", "PatternFileError", "parse_radiation", "read_pattern"]

# Kα1, Kα2 wavelengths in Å and the Kα2/Kα1 intensity ratio.
ANODES: dict[str, Radiation] = {
    "Cu": Radiation(1.540598, 1.544426, 0.5),
    "Co": Radiation(1.788965, 1.792850, 0.5),
    "Mo": Radiation(0.709300, 0.713590, 0.5),
    "Fe": Radiation(1.936042, 1.939980, 0.5),
    "Cr": Radiation(2.289700, 2.293606, 0.5),
    "Ag": Radiation(0.559421, 0.563813, 0.5),
}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


class PatternFileError(ValueError):
    """A pattern file that cannot be read; the message names the file and the problem."""


def parse_radiation(text: str) -> Radiation:
    """Radiation from a command-line string: an anode (``Cu``, ``Cu-Ka1`` for Kα1 only), a wavelength in Å
    (``1.5406``: monochromatic) or ``λ1,λ2[,ratio]`` for a doublet.

    Raises:
        ValueError: naming the accepted forms.
    """
    cleaned = text.strip()
    anode, _, line = cleaned.partition("-")
    if anode.capitalize() in ANODES:
        radiation = ANODES[anode.capitalize()]
        if line.lower() in ("ka1", "kalpha1", "kα1"):
            return Radiation(radiation.wavelength_angstrom)
        if line:
            raise ValueError(f"unknown line {line!r} for anode {anode}; use {anode} (Kα1+Kα2) or {anode}-Ka1")
        return radiation
    try:
        values = [float(part) for part in cleaned.split(",")]
    except ValueError:
        raise ValueError(
            f"cannot read radiation {text!r}: give an anode ({', '.join(ANODES)}), a wavelength in Å, "
            "or 'λ1,λ2[,ratio]'"
        ) from None
    if len(values) == 1:
        return Radiation(values[0])
    if len(values) in (2, 3):
        return Radiation(values[0], values[1], values[2] if len(values) == 3 else 0.5)
    raise ValueError(f"cannot read radiation {text!r}: at most three numbers 'λ1,λ2,ratio'")


def _radiation_from_comments(lines: list[str]) -> Radiation | None:
    for line in lines:
        lowered = line.lower()
        if "anode" in lowered or "target" in lowered or "tube" in lowered:
            for anode, radiation in ANODES.items():
                if re.search(rf"\b{anode.lower()}\b", lowered):
                    return radiation
        if "wavelength" in lowered or "lambda" in lowered:
            numbers = [float(n) for n in re.findall(_NUMBER, line.split(":", 1)[-1].split("=", 1)[-1])]
            numbers = [n for n in numbers if 0.1 < n < 5.0]
            if len(numbers) == 1:
                return Radiation(numbers[0])
            if len(numbers) >= 2:
                ratio = numbers[2] if len(numbers) > 2 and numbers[2] <= 1.0 else 0.5
                return Radiation(numbers[0], numbers[1], ratio)
    return None


def _text_columns(path: Path, text: str) -> tuple[np.ndarray, list[str]]:
    rows, comments = [], []
    delimiter = "," if path.suffix.lower() == ".csv" else None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line[0] in "#;!'\"" or re.match(r"^[A-Za-z_]", line):
            comments.append(line.lstrip("#;!'\" "))
            continue
        parts = next(csv.reader(io.StringIO(line))) if delimiter else line.replace(",", " ").split()
        try:
            rows.append([float(p) for p in parts if p.strip() != ""])
        except ValueError:
            comments.append(line)
    if not rows:
        raise PatternFileError(f"{path}: no numeric rows")
    width = min(len(r) for r in rows)
    if width < 2:
        raise PatternFileError(f"{path}: need at least two columns (2θ, counts), found {width}")
    return np.array([r[:width] for r in rows]), comments


def _columns_by_header(comments: list[str], width: int) -> tuple[int, int]:
    """Indices of the 2θ and counts columns from a header row, or (0, 1)."""
    for line in reversed(comments):
        names = [n.strip().lower() for n in re.split(r"[,\t;]|\s{2,}", line) if n.strip()]
        if len(names) != width:
            continue
        angle = next((i for i, n in enumerate(names) if "theta" in n or "2th" in n or "angle" in n), None)
        counts = next((i for i, n in enumerate(names) if n.startswith(("count", "intens", "i(", "y"))), None)
        if angle is not None and counts is not None:
            return angle, counts
    return 0, 1


def _read_text(path: Path) -> tuple[np.ndarray, np.ndarray, Radiation | None, float]:
    data, comments = _text_columns(path, path.read_text(errors="replace"))
    angle, counts = _columns_by_header(comments, data.shape[1])
    time_s = 1.0
    for line in comments:
        match = re.search(rf"(?:counting[ _]?time|time per step|step time)\D*({_NUMBER})", line, re.IGNORECASE)
        if match:
            time_s = float(match.group(1))
    return data[:, angle], data[:, counts], _radiation_from_comments(comments), time_s


def _read_xrdml(path: Path) -> tuple[np.ndarray, np.ndarray, Radiation | None, float]:
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise PatternFileError(f"{path}: not a valid XRDML (XML) file: {error}") from None
    radiation = None
    used = root.find(".//{*}usedWavelength")
    if used is not None:
        ka1 = used.find("{*}kAlpha1")
        ka2 = used.find("{*}kAlpha2")
        ratio = used.find("{*}ratioKAlpha2KAlpha1")
        if ka1 is not None and ka1.text:
            intended = (used.get("intended") or "").lower()
            single_line = "alpha 1" in intended or "alpha1" in intended
            radiation = Radiation(
                float(ka1.text),
                None if single_line or ka2 is None or not ka2.text else float(ka2.text),
                float(ratio.text) if ratio is not None and ratio.text else 0.5,
            )
    points = root.find(".//{*}scan/{*}dataPoints")
    if points is None:
        raise PatternFileError(f"{path}: no scan/dataPoints element")
    intensities = points.find("{*}intensities")
    if intensities is None:
        intensities = points.find("{*}counts")
    if intensities is None or not intensities.text:
        raise PatternFileError(f"{path}: no intensities or counts in the first scan")
    counts = np.array(intensities.text.split(), dtype=float)
    two_theta = None
    for positions in points.findall("{*}positions"):
        if positions.get("axis", "").lower() not in ("2theta", "2theta-omega"):
            continue
        listed = positions.find("{*}listPositions")
        if listed is not None and listed.text:
            two_theta = np.array(listed.text.split(), dtype=float)
        else:
            start, end = positions.find("{*}startPosition"), positions.find("{*}endPosition")
            if start is not None and end is not None:
                two_theta = np.linspace(float(start.text or 0), float(end.text or 0), counts.size)
    if two_theta is None:
        raise PatternFileError(f"{path}: no 2Theta positions in the first scan")
    timing = points.find("{*}commonCountingTime")
    time_s = float(timing.text) if timing is not None and timing.text else 1.0
    return two_theta, counts, radiation, time_s


def read_pattern(path: str | Path, radiation: Radiation | str | None = None, sample_id: str | None = None
                 ) -> Diffractogram:
    """Read a powder pattern file into a :class:`Diffractogram` (counts per step, 2θ increasing).

    Args:
        path: an .xy, .xye, .dat, .txt, .csv or .xrdml file. Text files: columns 2θ (deg) and counts (a third,
            the standard deviation, is ignored); a header row may name the columns; ``#`` lines are comments.
        radiation: overrides the file's radiation: a :class:`Radiation` or a string for :func:`parse_radiation`.
        sample_id: defaults to the file's stem.

    Raises:
        PatternFileError: for an unreadable file, or when neither the file nor ``radiation`` gives the radiation.
    """
    path = Path(path)
    if not path.exists():
        raise PatternFileError(f"{path}: no such file")
    if path.suffix.lower() == ".xrdml":
        two_theta, counts, found, time_s = _read_xrdml(path)
    else:
        two_theta, counts, found, time_s = _read_text(path)
    chosen = parse_radiation(radiation) if isinstance(radiation, str) else radiation or found
    if chosen is None:
        raise PatternFileError(
            f"{path}: the file does not state its radiation; give it (an anode such as Cu, or a wavelength in Å)"
        )
    order = np.argsort(two_theta, kind="stable")
    return Diffractogram(
        two_theta_deg=two_theta[order],
        counts=counts[order],
        wavelength_angstrom=chosen.wavelength_angstrom,
        wavelength_ka2_angstrom=chosen.wavelength_ka2_angstrom,
        ka2_ratio=chosen.ka2_ratio,
        counting_time_s=time_s,
        sample_id=sample_id or path.stem,
        metadata={"source_file": str(path)},
    )
