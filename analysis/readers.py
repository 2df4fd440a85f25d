"""Reading powder patterns as labs write them (.xy/.xye/.dat, CSV, Panalytical .xrdml) into :class:`Diffractogram` s.

The radiation comes from the file when it says (an .xrdml ``usedWavelength`` block; a comment line of a text file
such as ``# wavelength: 1.5406`` or ``# anode: Cu``) or is given explicitly, which wins over the file. Anode names
expand to their Kα1/Kα2 doublet with the usual 2:1 intensity ratio (Hölzer et al., Phys. Rev. A 56, 4554 (1997)).
An .xrdml scan holds Kα1 and Kα2 (at the file's ratio) whatever ``usedWavelength intended`` says, unless the file
names a Kα1 monochromator or notes that Kα2 was stripped; the optics it names (Kβ filter, monochromator) go into the
pattern's ``metadata``.

Every file that cannot be a measured pattern (a directory, binary or non-UTF-8 bytes, ragged columns, NaN, negative
or absurd counts, 2θ outside (0°, 180°), too few points) raises one :class:`PatternFileError` naming the file and the
problem.
"""

from __future__ import annotations

import csv
import io
import math
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from analysis.powder_model import Radiation
from instruments.readings import Diffractogram

__all__ = ["ANODES", "MIN_POINTS_TO_ANALYSE", "PATTERN_SUFFIXES", "PatternFileError", "parse_radiation", "read_pattern"]

#: The file types :func:`read_pattern` reads.
PATTERN_SUFFIXES = (".xy", ".xye", ".dat", ".txt", ".csv", ".xrdml")
#: A pattern file larger than this is not one scan.
MAX_PATTERN_FILE_BYTES = 100_000_000
#: More counts in one step than any detector records: a unit mix-up or a corrupted file.
MAX_COUNTS = 1e12
#: Fewer points than this cannot be analysed (the whole-pattern fit refines about this many parameters).
MIN_POINTS_TO_ANALYSE = 20

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
        return _checked_radiation(Radiation(values[0]), f"radiation {text!r}")
    if len(values) in (2, 3):
        doublet = Radiation(values[0], values[1], values[2] if len(values) == 3 else 0.5)
        return _checked_radiation(doublet, f"radiation {text!r}")
    raise ValueError(f"cannot read radiation {text!r}: at most three numbers 'λ1,λ2,ratio'")


def _checked_radiation(radiation: Radiation, what: str) -> Radiation:
    """``radiation`` if its wavelengths are X-ray wavelengths (0.01 to 10 Å) and its Kα2 ratio within [0, 1]."""
    for wavelength in (radiation.wavelength_angstrom, radiation.wavelength_ka2_angstrom):
        if wavelength is not None and not (math.isfinite(wavelength) and 0.01 <= wavelength <= 10.0):
            raise ValueError(f"{what}: wavelength {wavelength:g} Å is not an X-ray wavelength (0.01 to 10 Å)")
    if not (math.isfinite(radiation.ka2_ratio) and 0.0 <= radiation.ka2_ratio <= 1.0):
        raise ValueError(f"{what}: Kα2/Kα1 ratio {radiation.ka2_ratio:g} is not within [0, 1]")
    return radiation


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
    """The numeric rows of a text pattern and its comment lines. Lines before the data that are not numbers are
    comments (a header row); inside the data, a line that starts like a number but is not one is an error."""
    rows: list[list[float]] = []
    first_row_line = 0
    comments: list[str] = []
    delimiter = "," if path.suffix.lower() == ".csv" else None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line[0] in "#;!'\"" or re.match(r"^[A-Za-z_]", line):
            comments.append(line.lstrip("#;!'\" "))
            continue
        parts = next(csv.reader(io.StringIO(line))) if delimiter else line.replace(",", " ").split()
        tokens = [p.strip() for p in parts if p.strip() != ""]
        try:
            values = [float(token) for token in tokens]
        except ValueError:
            if rows:
                shown = line if len(line) <= 40 else line[:37] + "..."
                reason = " (bytes that are not UTF-8 text)" if "\ufffd" in line else ""
                raise PatternFileError(f"{path}: line {number}: cannot read {shown!r} as numbers{reason}") from None
            comments.append(line)
            continue
        bad = [token for token, value in zip(tokens, values, strict=True) if not math.isfinite(value)]
        if bad:
            raise PatternFileError(f"{path}: line {number}: {bad[0]!r} is not a finite number")
        if rows and len(values) != len(rows[0]):
            raise PatternFileError(
                f"{path}: line {number} has {_values(len(values))} but line {first_row_line} has {len(rows[0])}: "
                "ragged columns (a truncated or merged file?)"
            )
        if not rows:
            first_row_line = number
        rows.append(values)
    if not rows:
        not_text = " and bytes that are not UTF-8 text: not a text pattern" if "\ufffd" in text else ""
        raise PatternFileError(f"{path}: no numeric rows{not_text}")
    width = len(rows[0])
    if width < 2:
        raise PatternFileError(f"{path}: need at least two columns (2θ, counts), found {width}")
    return np.array(rows), comments


def _values(n: int) -> str:
    return f"{n} value" if n == 1 else f"{n} values"


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


def _decode(path: Path, data: bytes) -> str:
    """Text of a pattern file: UTF-8 (undecodable bytes in comment lines are harmless), or UTF-16 with a
    byte-order mark as Windows programs write it; NUL bytes otherwise mean a binary file."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise PatternFileError(f"{path}: not readable as the UTF-16 text its byte-order mark announces") from None
    if b"\x00" in data[:65536]:
        raise PatternFileError(
            f"{path}: a binary file (or UTF-16 text without a byte-order mark), not a text pattern: it holds NUL "
            "bytes; export the scan as .xy, .csv or .xrdml"
        )
    return data.decode("utf-8-sig", errors="replace")


def _read_text(path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray, Radiation | None, float, dict[str, object]]:
    table, comments = _text_columns(path, _decode(path, data))
    angle, counts = _columns_by_header(comments, table.shape[1])
    time_s = 1.0
    for line in comments:
        match = re.search(rf"(?:counting[ _]?time|time per step|step time)\D*({_NUMBER})", line, re.IGNORECASE)
        if match:
            time_s = float(match.group(1))
    return table[:, angle], table[:, counts], _radiation_from_comments(comments), time_s, {}


def _numbers(path: Path, text: str, what: str) -> np.ndarray:
    try:
        return np.array(text.split(), dtype=float)
    except ValueError:
        raise PatternFileError(f"{path}: {what} are not all numbers") from None


def _number(path: Path, text: str | None, what: str) -> float:
    try:
        return float(text or "")
    except ValueError:
        raise PatternFileError(f"{path}: {what} {text!r} is not a number") from None


#: The usual Kβ filter of each anode (a filter element of another material is still a Kβ filter when its name says so).
KBETA_FILTERS = {"Cu": "Ni", "Co": "Fe", "Mo": "Zr", "Fe": "Mn", "Cr": "V", "Ag": "Pd"}
# Optics that pass Kα1 alone: a Johansson Ge/Si/quartz crystal or a hybrid (mirror + channel-cut) monochromator in
# the incident beam, or any monochromator that names Kα1. A diffracted-beam (graphite) monochromator keeps Kα2.
_KALPHA1 = re.compile(r"k\s*-?\s*(?:alpha|α|a)\s*-?\s*1\b", re.IGNORECASE)
_KALPHA1_CRYSTAL = re.compile(r"johans|hybrid|quartz|\b(?:ge|si)\s*\(?\s*\d{3}", re.IGNORECASE)
_KALPHA2_STRIPPED = re.compile(
    r"k\s*-?\s*(?:alpha|α|a)\s*-?\s*2\W*(?:\w+\W+){0,3}(?:strip|remov)|(?:strip|remov)\w*\W+(?:\w+\W+){0,3}"
    r"k\s*-?\s*(?:alpha|α|a)\s*-?\s*2",
    re.IGNORECASE,
)
_NEGATION = re.compile(r"\b(?:not|no|without|never|kept)\b|n't", re.IGNORECASE)


def _local(element: ElementTree.Element) -> str:
    return element.tag.rpartition("}")[2]


def _described(element: ElementTree.Element) -> str:
    """An optics element's name attribute and the text of its children (``<crystal>Ge (220)</crystal>``)."""
    return " ".join([element.get("name") or "", *(child.text or "" for child in element.iter())])


def _kalpha1_only(root: ElementTree.Element) -> str | None:
    """Why an .xrdml scan holds Kα1 alone, if the file says so: a Kα1 monochromator or a Kα2-stripping note.

    ``usedWavelength intended="K-Alpha 1"`` does not count: PANalytical writes it on scans that hold both lines.
    """
    for path_name in ("incidentBeamPath", "diffractedBeamPath"):
        for beam_path in root.iterfind(f".//{{*}}{path_name}"):
            for element in beam_path.iter():
                if "monochromator" not in _local(element).lower():
                    continue
                described = _described(element)
                if _KALPHA1.search(described) or (path_name == "incidentBeamPath"
                                                  and _KALPHA1_CRYSTAL.search(described)):
                    return f"{path_name} {_local(element)} {' '.join(described.split())!r}"
    for entry in root.iterfind(".//{*}comment/{*}entry"):
        match = _KALPHA2_STRIPPED.search(entry.text or "")
        if match and not _NEGATION.search(match.group(0)):  # "Kα2 not stripped" says the opposite
            return f"comment {' '.join(match.string.split())!r}"
    return None


def _optional_number(element: ElementTree.Element | None) -> float | None:
    """An optional element's text as a number, or None when it is absent or not a number (metadata only: a
    required number goes through `_number`, which refuses the file)."""
    if element is None or not element.text:
        return None
    try:
        return float(element.text)
    except ValueError:
        return None


def _xrdml_optics(root: ElementTree.Element) -> dict[str, object]:
    """What an .xrdml file says about the optics: anode, Kβ filter (material, thickness), Kβ wavelength,
    monochromator; only the keys the file gives."""
    found: dict[str, object] = {}
    anode = (root.findtext(".//{*}incidentBeamPath/{*}xRayTube/{*}anodeMaterial") or "").strip()
    if anode:
        found["anode"] = anode
    kbeta = _optional_number(root.find(".//{*}usedWavelength/{*}kBeta"))
    if kbeta is not None:
        found["kbeta_wavelength_angstrom"] = kbeta
    for path_name in ("incidentBeamPath", "diffractedBeamPath"):
        for element in root.iterfind(f".//{{*}}{path_name}//{{*}}filter"):
            material = (element.findtext("{*}material") or "").strip()
            name = element.get("name") or ""
            if not (re.search(r"beta|kβ", name, re.IGNORECASE) or material == KBETA_FILTERS.get(anode)):
                continue
            found["kbeta_filter"] = material or name
            thickness = _optional_number(element.find("{*}thickness"))
            if thickness is not None:
                found["kbeta_filter_thickness_mm"] = thickness
        for element in root.iterfind(f".//{{*}}{path_name}//{{*}}monochromator"):
            found["monochromator"] = " ".join(_described(element).split())
    return found


def _read_xrdml(
    path: Path, data: bytes
) -> tuple[np.ndarray, np.ndarray, Radiation | None, float, dict[str, object]]:
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        raise PatternFileError(f"{path}: not a valid XRDML (XML) file: {error}") from None
    radiation = None
    metadata = _xrdml_optics(root)
    used = root.find(".//{*}usedWavelength")
    if used is not None:
        ka1 = used.find("{*}kAlpha1")
        ka2 = used.find("{*}kAlpha2")
        ratio = used.find("{*}ratioKAlpha2KAlpha1")
        if ka1 is not None and ka1.text:
            # Both lines unless the optics or a note say Kα2 is gone: "intended" names the line the 2θ scale refers
            # to, and PANalytical writes "K-Alpha 1" on unmonochromated scans that hold Kα1 and Kα2.
            single_line = _kalpha1_only(root)
            if single_line:
                metadata["kalpha1_only"] = single_line
            radiation = Radiation(
                _number(path, ka1.text, "kAlpha1"),
                None if single_line or ka2 is None or not ka2.text else _number(path, ka2.text, "kAlpha2"),
                _number(path, ratio.text, "ratioKAlpha2KAlpha1") if ratio is not None and ratio.text else 0.5,
            )
    points = root.find(".//{*}scan/{*}dataPoints")
    if points is None:
        raise PatternFileError(f"{path}: no scan/dataPoints element")
    intensities = points.find("{*}intensities")
    if intensities is None:
        intensities = points.find("{*}counts")
    if intensities is None or not intensities.text:
        raise PatternFileError(f"{path}: no intensities or counts in the first scan")
    counts = _numbers(path, intensities.text, "the intensities")
    two_theta = None
    for positions in points.findall("{*}positions"):
        if positions.get("axis", "").lower() not in ("2theta", "2theta-omega"):
            continue
        listed = positions.find("{*}listPositions")
        if listed is not None and listed.text:
            two_theta = _numbers(path, listed.text, "the 2Theta listPositions")
        else:
            start, end = positions.find("{*}startPosition"), positions.find("{*}endPosition")
            if start is not None and end is not None:
                first = _number(path, start.text, "2Theta startPosition")
                last = _number(path, end.text, "2Theta endPosition")
                two_theta = np.linspace(first, last, counts.size)
    if two_theta is None:
        raise PatternFileError(f"{path}: no 2Theta positions in the first scan")
    if two_theta.size != counts.size:
        raise PatternFileError(f"{path}: {two_theta.size} 2Theta positions but {counts.size} intensities")
    timing = points.find("{*}commonCountingTime")
    time_s = _number(path, timing.text, "commonCountingTime") if timing is not None and timing.text else 1.0
    return two_theta, counts, radiation, time_s, metadata


def _file_bytes(path: Path) -> bytes:
    """The bytes of a pattern file, refusing what cannot be one: no file, a directory, a device, a huge file."""
    if not path.exists():
        raise PatternFileError(f"{path}: no such file")
    if path.is_dir():
        raise PatternFileError(f"{path}: a directory, not a pattern file")
    if not path.is_file():
        raise PatternFileError(f"{path}: not a regular file (a device or a pipe?)")
    if path.suffix.lower() not in PATTERN_SUFFIXES:
        kind = f"file type {path.suffix!r}" if path.suffix else "file without an extension"
        raise PatternFileError(
            f"{path}: unsupported {kind}; give one of {', '.join(PATTERN_SUFFIXES[:-1])} or {PATTERN_SUFFIXES[-1]}"
        )
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            data = handle.read(MAX_PATTERN_FILE_BYTES + 1) if size <= MAX_PATTERN_FILE_BYTES else b""
    except OSError as error:
        raise PatternFileError(f"{path}: cannot read ({error.strerror or error})") from None
    if size > MAX_PATTERN_FILE_BYTES or len(data) > MAX_PATTERN_FILE_BYTES:
        raise PatternFileError(f"{path}: too large for one scan (more than {MAX_PATTERN_FILE_BYTES // 1_000_000} MB)")
    if not data.strip():
        raise PatternFileError(f"{path}: the file is empty")
    return data


def _check_values(path: Path, two_theta: np.ndarray, counts: np.ndarray, time_s: float, min_points: int) -> None:
    """Refuse values no diffractometer measures: NaN, 2θ outside (0°, 180°), negative or absurd counts."""
    if two_theta.size < min_points:
        points = f"{two_theta.size} point" + ("" if two_theta.size == 1 else "s")
        raise PatternFileError(f"{path}: only {points}; at least {min_points} are needed")
    if not (np.all(np.isfinite(two_theta)) and np.all(np.isfinite(counts))):
        raise PatternFileError(f"{path}: holds values that are not finite numbers (NaN or infinity)")
    low, high = float(two_theta.min()), float(two_theta.max())
    if low <= 0.0 or high >= 180.0:
        raise PatternFileError(
            f"{path}: 2θ runs from {low:g}° to {high:g}°, outside (0°, 180°): is the first column 2θ in degrees?"
        )
    if two_theta.size > 1 and low == high:
        raise PatternFileError(f"{path}: 2θ does not vary (every point at {low:g}°)")
    negative = np.flatnonzero(counts < 0)
    if negative.size:
        raise PatternFileError(
            f"{path}: {negative.size} negative count(s), the first at 2θ = {two_theta[negative[0]]:g}°: counts "
            "cannot be negative (background-subtracted data?)"
        )
    if not np.any(counts > 0):
        raise PatternFileError(f"{path}: every count is zero: an empty or failed scan")
    if float(counts.max()) > MAX_COUNTS:
        raise PatternFileError(
            f"{path}: counts up to {float(counts.max()):.3g}, beyond any detector (at most {MAX_COUNTS:.0e} per step)"
        )
    if not (math.isfinite(time_s) and time_s > 0):
        raise PatternFileError(f"{path}: counting time {time_s:g} s: must be a positive number of seconds")


def read_pattern(
    path: str | Path, radiation: Radiation | str | None = None, sample_id: str | None = None, min_points: int = 2
) -> Diffractogram:
    """Read a powder pattern file into a :class:`Diffractogram` (counts per step, 2θ increasing).

    Args:
        path: an .xy, .xye, .dat, .txt, .csv or .xrdml file. Text files: columns 2θ (deg) and counts (a third,
            the standard deviation, is ignored); a header row may name the columns; ``#`` lines are comments.
        radiation: overrides the file's radiation: a :class:`Radiation` or a string for :func:`parse_radiation`.
        sample_id: defaults to the file's stem.
        min_points: refuse a pattern of fewer points (:data:`MIN_POINTS_TO_ANALYSE` before an analysis; at
            least two, so 2θ has a range).

    Returns:
        The pattern; its ``metadata`` holds ``source_file`` and, for an .xrdml, what the file says of its optics
        (only the keys it gives): ``anode``, ``kbeta_filter`` (the filter's material, ``"Ni"`` for Cu),
        ``kbeta_filter_thickness_mm``, ``kbeta_wavelength_angstrom``, ``monochromator`` and ``kalpha1_only`` (why
        the scan holds Kα1 alone: a Kα1 monochromator or a Kα2-stripping note; then it has no Kα2 line).

    Raises:
        PatternFileError: for an unreadable file, values no diffractometer measures, or when neither the file nor
            ``radiation`` gives the radiation.
    """
    path = Path(path)
    data = _file_bytes(path)
    if path.suffix.lower() == ".xrdml":
        two_theta, counts, found, time_s, optics = _read_xrdml(path, data)
    else:
        two_theta, counts, found, time_s, optics = _read_text(path, data)
    try:
        chosen = parse_radiation(radiation) if isinstance(radiation, str) else radiation or found
        if chosen is not None and chosen is found:
            _checked_radiation(chosen, "the file's radiation")
    except ValueError as error:
        raise PatternFileError(f"{path}: {error}") from None
    if chosen is None:
        raise PatternFileError(
            f"{path}: the file does not state its radiation; give it (an anode such as Cu, or a wavelength in Å)"
        )
    _check_values(path, two_theta, counts, time_s, min_points)
    order = np.argsort(two_theta, kind="stable")
    try:
        return Diffractogram(
            two_theta_deg=two_theta[order],
            counts=counts[order],
            wavelength_angstrom=chosen.wavelength_angstrom,
            wavelength_ka2_angstrom=chosen.wavelength_ka2_angstrom,
            ka2_ratio=chosen.ka2_ratio,
            counting_time_s=time_s,
            sample_id=sample_id or path.stem,
            metadata={"source_file": str(path), **optics},
        )
    except ValueError as error:
        raise PatternFileError(f"{path}: {error}") from None
