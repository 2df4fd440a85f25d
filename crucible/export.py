"""A campaign's results as files: the experiments table (CSV, Parquet or JSON), the campaign file, and every powder
pattern measured as ``.xye`` and NeXus.

``export_campaign(results, "out", "csv", patterns=("xye", "nexus"))`` writes into ``out/``:

- ``experiments.csv`` with ``experiments.schema.json`` beside it (a Frictionless Table Schema: every column's type,
  and its ``unit`` where known), or ``experiments.parquet`` (the units in its metadata, read back by pandas into
  ``attrs["units"]``), or ``experiments.json`` (pandas' ``orient="table"``: the same Table Schema, units included,
  then the rows, every number exact);
- ``campaign.yaml``: the campaign file the campaign runs under (``crucible run`` takes it);
- ``patterns/<sample id>_<step>.xye`` and ``.nxs`` for every diffractogram (see :mod:`crucible.patterns`).

:func:`read_experiments` reads any of the three tables back into the very DataFrame, units in ``attrs["units"]``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pandas.io.json import build_table_schema

from crucible.patterns import write_nexus, write_xye
from crucible.results import CampaignResults
from instruments.readings import Diffractogram

__all__ = ["PatternFormat", "TableFormat", "export_campaign", "read_experiments", "write_patterns", "write_table"]

TABLE_NAME = "experiments"
SCHEMA_SUFFIX = ".schema.json"


class TableFormat(StrEnum):
    """File formats of the experiments table."""

    csv = "csv"
    parquet = "parquet"
    json = "json"


class PatternFormat(StrEnum):
    """File formats of the measured powder patterns."""

    xye = "xye"
    nexus = "nexus"


PATTERN_SUFFIXES = {PatternFormat.xye: ".xye", PatternFormat.nexus: ".nxs"}


def _schema(frame: pd.DataFrame) -> dict[str, Any]:
    """The table's Table Schema (pandas' own), each field with its ``unit`` where known."""
    schema = build_table_schema(frame, index=True)
    units = frame.attrs.get("units", {})
    for field in schema["fields"]:
        if field["name"] in units:
            field["unit"] = units[field["name"]]
    return schema


def write_table(frame: pd.DataFrame, to_dir: str | Path, fmt: TableFormat | str) -> list[Path]:
    """Write the experiments table as ``experiments.<fmt>`` into ``to_dir``; returns the files written."""
    fmt = TableFormat(fmt)
    to_dir = Path(to_dir)
    to_dir.mkdir(parents=True, exist_ok=True)
    path = to_dir / f"{TABLE_NAME}.{fmt.value}"
    if fmt is TableFormat.csv:
        frame.to_csv(path)
        schema = to_dir / f"{TABLE_NAME}{SCHEMA_SUFFIX}"
        schema.write_text(json.dumps(_schema(frame), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return [path, schema]
    if fmt is TableFormat.parquet:
        frame.to_parquet(path)  # pandas keeps attrs (the units) in the file's metadata
        return [path]
    # the rows written by Python's json, which keeps every float's shortest exact form (pandas' to_json rounds)
    rows = [{k: _json_value(v) for k, v in row.items()} for row in frame.reset_index().to_dict("records")]
    document = {"schema": _schema(frame), "data": rows}
    path.write_text(json.dumps(document, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    return [path]


def _json_value(value: Any) -> Any:
    """A table cell as JSON: missing values null, times ISO 8601 with their zone, numpy numbers plain."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


_PANDAS_TYPES = {"integer": "int64", "number": "float64", "boolean": "bool", "string": "str"}


def read_experiments(path: str | Path) -> pd.DataFrame:
    """Read an experiments table :func:`export_campaign` wrote (``.csv`` with its schema beside it, ``.parquet`` or
    ``.json``) back into the DataFrame :meth:`CampaignResults.experiments` gave, units in ``attrs["units"]``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix == ".json":
        text = path.read_text(encoding="utf-8")
        frame = pd.read_json(StringIO(text), orient="table", precise_float=True)
        frame.attrs["units"] = _units(json.loads(text)["schema"])
    elif suffix == ".csv":
        schema = json.loads((path.parent / f"{path.stem}{SCHEMA_SUFFIX}").read_text(encoding="utf-8"))
        fields = schema["fields"]
        dates = [f["name"] for f in fields if f["type"] == "datetime"]
        types = {f["name"]: _PANDAS_TYPES[f["type"]] for f in fields if f["type"] in _PANDAS_TYPES}
        frame = pd.read_csv(path, dtype=types, keep_default_na=False, na_values=[""])
        for name in dates:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
        frame = frame.set_index(schema["primaryKey"])
        frame.attrs["units"] = _units(schema)
    else:
        raise ValueError(f"{path}: not an experiments table (.csv, .parquet or .json)")
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.DatetimeTZDtype):
            frame[name] = frame[name].dt.as_unit("us")
    return frame


def _units(schema: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["unit"] for f in schema["fields"] if "unit" in f}


def write_patterns(
    results: CampaignResults, to_dir: str | Path, formats: Sequence[PatternFormat | str]
) -> list[Path]:
    """Write every diffractogram of the campaign in each of ``formats`` into ``to_dir``, named
    ``<sample id>_<step>``; returns the files written. Readings of other kinds are left out."""
    wanted = [PatternFormat(f) for f in formats]
    to_dir = Path(to_dir)
    frame = results.experiments()
    conditions = [c for c in frame.columns if c in {p.name for p in results.spec.parameters}]
    units = frame.attrs.get("units", {})
    written: list[Path] = []
    for experiment, step, pattern in results.readings():
        if not isinstance(pattern, Diffractogram):
            continue
        row = frame.loc[experiment]
        title = f"campaign {results.name}, experiment {experiment}, sample {row['sample_id']}, step {step}"
        stem = to_dir / f"{row['sample_id']}_{step}"
        values = {name: _json_value(row[name]) for name in conditions if not pd.isna(row[name])}
        for fmt in wanted:
            path = stem.with_suffix(PATTERN_SUFFIXES[fmt])
            if fmt is PatternFormat.xye:
                written.append(write_xye(path, pattern, title))
            else:
                written.append(write_nexus(path, pattern, title=title, conditions=values, units=units))
    return written


def export_campaign(
    results: CampaignResults,
    to_dir: str | Path,
    fmt: TableFormat | str = TableFormat.csv,
    *,
    patterns: Sequence[PatternFormat | str] = (),
) -> list[Path]:
    """Write a campaign's results into ``to_dir`` (see the module's docstring): the experiments table in ``fmt``
    (``csv``, ``parquet`` or ``json``), the campaign file, and with ``patterns`` (``xye``, ``nexus``) every
    diffractogram. Returns the files written.

    Raises:
        ValueError: an unknown table or pattern format.
    """
    try:
        table_format = TableFormat(fmt)
        pattern_formats = [PatternFormat(p) for p in patterns]
    except ValueError as error:
        raise ValueError(
            f"{error}; tables: {', '.join(TableFormat)}; patterns: {', '.join(PatternFormat)}"
        ) from None
    to_dir = Path(to_dir)
    written = write_table(results.experiments(), to_dir, table_format)
    campaign_file = to_dir / "campaign.yaml"
    campaign_file.write_text(
        yaml.safe_dump(json.loads(results.record.spec_json), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    written.append(campaign_file)
    if pattern_formats:
        written += write_patterns(results, to_dir / "patterns", pattern_formats)
    return written
