"""Phase identification ranks the right library phases and flags phases the library lacks (open-set rejection)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.analysis_agents import PhaseIdentificationAgent
from analysis.phase_identification import PhaseLibrary, identify_phases
from sim_lab.datasets import MeasuredSample, baddeleyite, brookite, decoy_phases, measured_set

N = 8


@pytest.fixture(scope="module")
def library() -> PhaseLibrary:
    """Built-in CIF phases (anatase, rutile) plus pymatgen structures of four decoys."""
    return PhaseLibrary({"anatase": "anatase", "rutile": "rutile", **decoy_phases()})


@pytest.fixture(scope="module")
def known() -> list[MeasuredSample]:
    return measured_set("tio2_calcination", N, seed=11)


@pytest.fixture(scope="module")
def with_unknown() -> list[MeasuredSample]:
    """TiO2 patterns that also hold 10-40 wt% of brookite or monoclinic ZrO2, neither of which is in the library."""
    return measured_set(
        "tio2_calcination",
        N,
        seed=12,
        unknown={"brookite": brookite(), "ZrO2": baddeleyite()},
        unknown_fraction=(0.1, 0.4),
    )


def test_known_patterns_rank_their_phases_and_are_not_flagged(library: PhaseLibrary, known: list) -> None:
    flagged = 0
    for sample in known:
        result = identify_phases(sample.pattern, library)
        flagged += result.unknown_phase
        major = {p for p in ("anatase", "rutile") if sample.quantities[f"{p}_fraction"] >= 0.05}
        assert major <= {c.name for c in result.candidates[: len(major)]}, result.candidates
        assert major <= set(result.phases) <= {"anatase", "rutile"}
        assert result.reduced_chi2 < 1.3
    assert flagged / N < 0.05


def test_phase_absent_from_library_is_flagged(library: PhaseLibrary, with_unknown: list) -> None:
    flagged = sum(identify_phases(sample.pattern, library).unknown_phase for sample in with_unknown)
    assert flagged / N >= 0.9


def test_unknown_phase_becomes_known_when_its_cif_joins_the_library(tmp_path: Path, with_unknown: list) -> None:
    cif = tmp_path / "brookite.cif"
    brookite().to(filename=str(cif))
    sample = next(s for s in with_unknown if s.pattern.sample_id.endswith("+brookite"))
    agent = PhaseIdentificationAgent({"anatase": "anatase", "rutile": "rutile", "brookite": cif})
    agent.tell(sample.pattern)
    (report,) = agent.report()
    assert report.quantities["unknown_phase"].value == 0.0
    assert report.quantities["brookite_fraction"].value == pytest.approx(
        sample.quantities["unknown_fraction"], abs=0.03
    )
    assert "brookite" in agent.last_identification.phases
