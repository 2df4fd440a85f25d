"""Issue 16, acceptance 4: every bad input gets one clear line, never a traceback.

The corpus: malformed campaign files (``tests/malformed/campaigns``: the demo campaign with one thing wrong per
file; each file's first line ``# expect: ...`` is a fragment of the error it must get), malformed pattern files
(``tests/malformed/patterns``, expectations in :data:`PATTERNS_EXPECTED`) and damaged databases (made here from
:data:`DATABASES`, since binary files are awkward in a repository).

Every file is checked in-process (what ``crucible run`` checks before it starts the lab, what ``crucible analyse``
reads, what every command's :class:`Store` opens); a few of each kind also go through the real CLI, as a user runs
it, for the exit status, the one ``error:`` line and the absence of a traceback.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from analysis.readers import MIN_POINTS_TO_ANALYSE, PatternFileError, read_pattern
from orchestrator.simulated_lab import SimulatedLabError, check_simulation
from orchestrator.spec import MAX_CAMPAIGN_FILE_BYTES, CampaignFileError, load_campaign, parse_campaign
from orchestrator.store import CampaignRecord, ExperimentRecord, Store, StoreError

ROOT = Path(__file__).parent.parent
MALFORMED = Path(__file__).parent / "malformed"
CAMPAIGNS = MALFORMED / "campaigns"
PATTERNS = MALFORMED / "patterns"
EXAMPLE = ROOT / "examples" / "tio2_anneal.yaml"

#: Corpus files that cannot carry an ``# expect:`` line.
CAMPAIGNS_EXPECTED = {"dev_zero.yaml": "too large for a campaign file (more than 1 MB"}

PATTERNS_EXPECTED = {
    "all_zero_counts.xy": "every count is zero: an empty or failed scan",
    "binary_garbage.xy": "a binary file (or UTF-16 text without a byte-order mark), not a text pattern",
    "binary_without_nul.dat": "no numeric rows and bytes that are not UTF-8 text: not a text pattern",
    "columns_of_different_lengths.csv": "line 53 has 1 value but line 3 has 2: ragged columns",
    "constant_two_theta.xy": "2θ does not vary (every point at 25°)",
    "counting_time_zero.xy": "counting time 0 s: must be a positive number of seconds",
    "counts_1e300.xy": "counts up to 7.13e+300, beyond any detector (at most 1e+12 per step)",
    "dev_zero.xy": "not a regular file (a device or a pipe?)",
    "directory.xy": "a directory, not a pattern file",
    "empty.xy": "the file is empty",
    "header_only.csv": "no numeric rows",
    "infinite_values.csv": "line 23: 'inf' is not a finite number",
    "letter_in_data.xy": "line 32: cannot read '26.00 12O' as numbers",
    "malformed.xrdml": "not a valid XRDML (XML) file: mismatched tag: line 17",
    "nan_values.xy": "line 12: 'nan' is not a finite number",
    "negative_counts.xy": "48 negative count(s), the first at 2θ = 20°: counts cannot be negative",
    "no_extension": "unsupported file without an extension; give one of .xy, .xye, .dat, .txt, .csv or .xrdml",
    "no_radiation.xy": "the file does not state its radiation",
    "not_utf8.xy": "line 12: cannot read '22.00\ufffd200' as numbers (bytes that are not UTF-8 text)",
    "not_xml.xrdml": "not a valid XRDML (XML) file: not well-formed (invalid token): line 1, column 1",
    "one_column.xy": "need at least two columns (2θ, counts), found 1",
    "one_point.xy": "only 1 point; at least 20 are needed",
    "ragged_rows.xye": "line 12 has 1 value but line 2 has 3: ragged columns",
    "two_points.xy": "only 2 points; at least 20 are needed",
    "two_theta_510_580.xy": "2θ runs from 510° to 580°, outside (0°, 180°)",
    "two_theta_from_zero.csv": "2θ runs from 0° to 9.8°, outside (0°, 180°)",
    "two_theta_negative.xy": "2θ runs from -5° to 4.8°, outside (0°, 180°)",
    "unsupported_extension.raw": "unsupported file type '.raw'; give one of .xy, .xye, .dat, .txt, .csv or .xrdml",
    "utf16_without_bom.xy": "it holds NUL bytes",
    "whitespace_only.xy": "the file is empty",
    "xrdml_entity_bomb.xrdml": "not a valid XRDML (XML) file: limit on input amplification factor",
    "xrdml_length_mismatch.xrdml": "40 2Theta positions but 50 intensities",
    "xrdml_wavelength_in_words.xrdml": "kAlpha1 'copper' is not a number",
    "xrdml_without_datapoints.xrdml": "no scan/dataPoints element",
    "xrdml_without_intensities.xrdml": "no intensities or counts in the first scan",
    "xrdml_words_as_intensities.xrdml": "the intensities are not all numbers",
    "xrdml_zero_wavelength.xrdml": "wavelength 0 Å is not an X-ray wavelength (0.01 to 10 Å)",
}


def crucible(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    """A non-zero exit, no traceback, and one ``error:`` line on stderr naming the problem."""
    shown = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode != 0, shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, shown
    assert fragment in lines[0], shown


def assert_one_line(message: str, names: str, fragment: str) -> None:
    assert "\n" not in message, message
    assert names in message, f"{names!r} not named in: {message}"
    assert fragment in message, f"expected {fragment!r} in: {message}"


# --- campaign files ----------------------------------------------------------------------------------------------


def campaign_files() -> list[Path]:
    return sorted(CAMPAIGNS.glob("*.yaml"))


def expected_for_campaign(path: Path) -> str:
    if path.name in CAMPAIGNS_EXPECTED:
        return CAMPAIGNS_EXPECTED[path.name]
    with path.open("rb") as handle:
        first = handle.readline().decode("ascii").rstrip("\n")
    assert first.startswith("# expect: "), f"{path.name}: the first line must be '# expect: <fragment>'"
    return first.removeprefix("# expect: ")


def campaign_problem(path: Path) -> str:
    """The one-line error that ``crucible run FILE --sim`` stops with before it starts the lab: the file check
    (load_campaign), then the simulated lab's check of its scenario (check_simulation)."""
    try:
        check_simulation(load_campaign(path))
    except (CampaignFileError, SimulatedLabError) as error:
        return str(error)
    pytest.fail(f"{path.name} was accepted")


def test_the_corpus_is_large_enough_and_every_file_has_an_expectation() -> None:
    assert len(campaign_files()) >= 50
    patterns = {path.name for path in PATTERNS.iterdir()}
    assert len(patterns) >= 30
    assert patterns == set(PATTERNS_EXPECTED)
    assert len(DATABASES) >= 5
    for path in campaign_files():
        assert expected_for_campaign(path)


def test_the_demo_campaign_the_corpus_mutates_is_valid() -> None:
    check_simulation(load_campaign(EXAMPLE))


@pytest.mark.parametrize("path", campaign_files(), ids=lambda path: path.name)
def test_malformed_campaign_file_is_refused_in_one_line(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CAMPAIGNS)  # relative CIF and key paths in the corpus are relative to it, as a user's would be
    message = campaign_problem(Path(path.name))
    # The file check names the file; the simulated lab's check (after the file check passed) names the campaign.
    names = "campaign 'tio2-anneal'" if message.startswith("campaign 'tio2-anneal'") else path.name
    assert_one_line(message, names, expected_for_campaign(path))


def test_a_campaign_file_larger_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(EXAMPLE.read_text() + "# " + "x" * MAX_CAMPAIGN_FILE_BYTES + "\n")
    assert_one_line(campaign_problem(path), "huge.yaml", "too large for a campaign file (more than 1 MB")


def test_a_merge_key_with_overrides_is_not_a_repeated_key(tmp_path: Path) -> None:
    """`<<: *furnace` followed by the keys it overrides is ordinary YAML, not a key given twice."""
    text = EXAMPLE.read_text().replace("  furnace:\n", "  furnace: &furnace\n")
    text = text.replace("  xrd:\n    kind: diffractometer\n", "  xrd:\n    <<: *furnace\n    kind: diffractometer\n")
    path = tmp_path / "merged.yaml"
    path.write_text(text)
    spec = load_campaign(path)
    assert spec.instruments["xrd"].kind == "diffractometer" and spec.instruments["xrd"].timeout_s == 5


@pytest.mark.parametrize(
    "name",
    ["timeout_inf.yaml", "not_utf8.yaml", "missing_planner_plugin.yaml", "unknown_scenario.yaml"],
)
def test_crucible_run_stops_at_the_file_check(name: str, tmp_path: Path) -> None:
    result = crucible("run", str(CAMPAIGNS / name), "--sim", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert "simulated lab up" not in result.stdout
    assert_one_error_line(result, expected_for_campaign(CAMPAIGNS / name))


# --- pattern files -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PATTERNS_EXPECTED))
def test_malformed_pattern_file_is_refused_in_one_line(name: str) -> None:
    """What `crucible analyse FILE` reads before any analysis (`agents.analysis_agents.analyse_file`)."""
    path = PATTERNS / name
    with pytest.raises(PatternFileError) as error:
        read_pattern(path, min_points=MIN_POINTS_TO_ANALYSE)
    assert str(error.value).startswith(f"{path}: ")
    assert_one_line(str(error.value), str(path), PATTERNS_EXPECTED[name])


def test_patterns_labs_do_write_are_still_read(tmp_path: Path) -> None:
    """UTF-16 with a byte-order mark (Windows), a Latin-1 degree sign in a header, a UTF-8 BOM."""
    rows = "".join(f"{20 + 0.1 * i:.2f} {100 + i}\n" for i in range(40))
    (tmp_path / "utf16.xy").write_bytes("# anode: Cu\n".encode("utf-16") + rows.encode("utf-16-le"))
    (tmp_path / "latin1.xy").write_bytes(("# anode: Cu\n# 2Theta (\xb0)  Counts\n" + rows).encode("latin-1"))
    (tmp_path / "bom.csv").write_bytes(("\ufeff# anode: Cu\n2theta,counts\n" + rows.replace(" ", ",")).encode())
    for name in ("utf16.xy", "latin1.xy", "bom.csv"):
        pattern = read_pattern(tmp_path / name, min_points=MIN_POINTS_TO_ANALYSE)
        assert pattern.two_theta_deg.size == 40 and pattern.counts[0] == 100, name


@pytest.mark.parametrize("name", ["directory.xy", "two_theta_510_580.xy", "two_points.xy"])
def test_crucible_analyse_names_what_is_wrong(name: str, tmp_path: Path) -> None:
    result = crucible("analyse", str(PATTERNS / name), cwd=tmp_path)
    assert_one_error_line(result, PATTERNS_EXPECTED[name])


# --- databases ---------------------------------------------------------------------------------------------------


def campaign_database(path: Path, experiments: int = 300) -> Path:
    """A real Crucible database: the demo campaign with ``experiments`` recorded experiments (many pages)."""
    store = Store(f"sqlite:///{path}")
    spec = parse_campaign(yaml.safe_load(EXAMPLE.read_text()))
    record = CampaignRecord(name=spec.name, spec_json=spec.model_dump_json())
    store.add(record)
    conditions = json.dumps({"anneal_temperature_c": 700.0, "anneal_time_h": 2.0, "dopant_fraction": 0.05})
    store.add(
        *(
            ExperimentRecord(campaign_id=record.id, index=i, sample_id=f"s{i:04d}", conditions_json=conditions)
            for i in range(experiments)
        )
    )
    store.close()
    return path


def truncated(tmp_path: Path) -> Path:
    path = campaign_database(tmp_path / "truncated.db")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def overwritten_page(tmp_path: Path) -> Path:
    path = campaign_database(tmp_path / "overwritten.db")
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[2 * page : 4 * page] = random.Random(16).randbytes(2 * page)  # the header is intact, two pages are not
    path.write_bytes(bytes(data))
    return path


def empty_file(tmp_path: Path) -> Path:
    path = tmp_path / "empty.db"
    path.touch()
    return path


def random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "random.db"
    path.write_bytes(random.Random(16).randbytes(8192))
    return path


def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "campaign.db"
    shutil.copy(EXAMPLE, path)  # a campaign file given as the database by mistake
    return path


def foreign_tables(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER, total REAL)")
        connection.execute("INSERT INTO users (email) VALUES ('someone@example.org')")
    connection.close()
    return path


def foreign_campaign_table(tmp_path: Path) -> Path:
    path = tmp_path / "marketing.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE campaign (id INTEGER PRIMARY KEY, title TEXT, audience TEXT)")
    connection.close()
    return path


def directory(tmp_path: Path) -> Path:
    path = tmp_path / "crucible.db"
    path.mkdir()
    return path


#: name -> (how to make the damaged database in a directory, a fragment of the error it must get)
DATABASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated": (truncated, "truncated: its header promises"),
    "overwritten_page": (overwritten_page, "damaged"),
    "empty_file": (empty_file, "the file is empty (0 bytes), not a Crucible database; delete it to start a new one"),
    "random_bytes": (random_bytes, "not a SQLite database (the file starts with"),
    "text_file": (text_file, "not a SQLite database (the file starts with b'# Largest phase-')"),
    "foreign_tables": (foreign_tables, "another application's SQLite database (tables orders, users; none of"),
    "foreign_campaign_table": (foreign_campaign_table, "table 'campaign' lacks column(s) name, spec_json, status"),
    "directory": (directory, "a directory, not a SQLite file"),
}


@pytest.mark.parametrize("name", sorted(DATABASES))
def test_damaged_database_is_refused_in_one_line(name: str, tmp_path: Path) -> None:
    make, fragment = DATABASES[name]
    path = make(tmp_path)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(StoreError) as error:
        Store(f"sqlite:///{path}")
    assert_one_line(str(error.value), str(path), fragment)
    if before is not None:
        assert path.read_bytes() == before, "a file Crucible refused was changed"


def test_a_new_database_is_created_and_an_existing_one_reopens(tmp_path: Path) -> None:
    path = campaign_database(tmp_path / "crucible.db", experiments=3)
    store = Store(f"sqlite:///{path}")
    try:
        assert [c.name for c in store.campaigns()] == ["tio2-anneal"]
    finally:
        store.close()


@pytest.mark.parametrize("name", ["truncated", "foreign_tables", "empty_file"])
def test_crucible_status_names_what_is_wrong_with_the_database(name: str, tmp_path: Path) -> None:
    make, fragment = DATABASES[name]
    path = make(tmp_path)
    result = crucible("status", "--db", f"sqlite:///{path}", cwd=tmp_path)
    assert_one_error_line(result, fragment)
    assert str(path) in result.stderr
