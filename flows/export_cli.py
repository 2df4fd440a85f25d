"""``crucible export NAME --to DIR``: a recorded campaign's results as files a scientist takes away (the experiments
table as CSV, Parquet or JSON, the campaign file, and the powder patterns as .xye and NeXus).

This module imports only typer at the top, so ``crucible --help`` stays quick; pandas and the rest load when the
command runs. :mod:`flows.cli` registers :func:`export`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["export"]

PATTERN_FORMATS = ("xye", "nexus")


class TableFormat(StrEnum):
    """The experiments table's file format (the same names as :class:`crucible.export.TableFormat`)."""

    csv = "csv"
    parquet = "parquet"
    json = "json"


def _pattern_formats(text: str) -> list[str]:
    """``"xye,nexus"`` -> ``["xye", "nexus"]``, each checked."""
    formats = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [f for f in formats if f not in PATTERN_FORMATS]
    if unknown:
        choices = ", ".join(PATTERN_FORMATS)
        raise typer.BadParameter(f"{', '.join(unknown)}: choose from {choices}", param_hint="--patterns")
    return formats


def export(
    name: Annotated[str, typer.Argument(help="Campaign name (as `crucible status` lists it).")],
    to: Annotated[
        Path,
        typer.Option("--to", help="Directory to write into (created if missing; files of the same name are replaced)."),
    ],
    table_format: Annotated[
        TableFormat,
        typer.Option(
            "--format",
            help="Format of the experiments table: csv (with experiments.schema.json: column types and units), "
            "parquet or json (units in the file).",
        ),
    ] = TableFormat.csv,
    patterns: Annotated[
        str,
        typer.Option(
            "--patterns",
            help="Also write every measured powder pattern, comma-separated formats: xye (2θ, counts, σ; "
            "wavelength in the header) and/or nexus (NeXus/HDF5 .nxs). Default: none.",
        ),
    ] = "",
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            "--db",
            help="Database URL (default: sqlite:///RUNS_DIR/crucible.db or $CRUCIBLE_DATABASE_URL).",
        ),
    ] = None,
    runs_dir: Annotated[
        Path, typer.Option("--runs-dir", help="The directory `crucible run --runs-dir` wrote the campaign to.")
    ] = Path("runs"),
) -> None:
    """Write a campaign's experiments table, its campaign file and (with --patterns) its powder patterns to DIR."""
    from rich.console import Console

    from crucible.export import export_campaign
    from crucible.results import ResultsError, open_campaign
    from orchestrator.outcomes import CampaignError

    formats = _pattern_formats(patterns)
    try:
        with open_campaign(name, database=database, runs_dir=runs_dir) as results:
            written = export_campaign(results, to, table_format.value, patterns=formats)
            experiments = len(results.experiments())
    except ResultsError as error:
        raise CampaignError(str(error)) from None  # one line on stderr, as every expected failure of the CLI
    shown = written if len(written) <= 4 else [*written[:3], f"... and {len(written) - 3} more"]
    Console().print(
        f"campaign {name}: {experiments} experiments -> {to}: " + ", ".join(str(p) for p in shown), highlight=False
    )
