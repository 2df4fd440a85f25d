"""NMF demixing finds the number of phases of a simulated composition spread and its phase regions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from agents.analysis_agents import DemixingAgent
from analysis.demixing import demix, estimate_background
from sim_lab import phases
from sim_lab.datasets import SpreadSample, baddeleyite, decoy_phases, ternary_spread

STRUCTURES = {"anatase": phases.anatase(), "ZrO2": baddeleyite(), "ceria": decoy_phases()["ceria"]}


@pytest.fixture(scope="module")
def spread() -> list[SpreadSample]:
    """A Ti-Zr-Ce oxide spread: 45 compositions, one-, two- and three-phase regions, a background per sample."""
    return ternary_spread(STRUCTURES, divisions=8, seed=0)


def _region_accuracy(result, samples: list[SpreadSample], names: list[str]) -> float:
    """Share of samples whose set of present components, mapped to phases, is the true set of phases present."""
    truth = np.array([[s.weight_fraction[n] for n in names] for s in samples])
    k = result.n_components
    similarity = np.corrcoef(np.c_[result.weights, truth].T)[:k, k:]
    rows, cols = linear_sum_assignment(-np.nan_to_num(similarity))
    mapping = {int(r): names[c] for r, c in zip(rows, cols, strict=True)}
    predicted = [frozenset(mapping.get(c, "?") for c in result.region_components[g]) for g in result.regions]
    return float(np.mean([p == s.phases_present for p, s in zip(predicted, samples, strict=True)]))


def test_spread_has_all_three_kinds_of_region(spread: list[SpreadSample]) -> None:
    sizes = {len(s.phases_present) for s in spread}
    assert sizes == {1, 2, 3}


def test_ternary_spread_three_components_and_regions(spread: list[SpreadSample]) -> None:
    result = demix([s.pattern for s in spread])
    assert result.n_components == 3
    assert _region_accuracy(result, spread, list(STRUCTURES)) >= 0.9
    assert len(result.region_components) == 7  # 3 one-phase + 3 two-phase + 1 three-phase regions
    np.testing.assert_allclose(result.weights.sum(axis=1), 1.0)


def test_binary_edge_has_two_components(spread: list[SpreadSample]) -> None:
    edge = [s for s in spread if s.composition[2] == 0.0]  # no ceria on this edge of the triangle
    result = demix([s.pattern for s in edge])
    assert result.n_components == 2
    assert _region_accuracy(result, edge, ["anatase", "ZrO2"]) >= 0.9


def test_background_estimate_follows_the_smooth_part(spread: list[SpreadSample]) -> None:
    pattern = spread[0].pattern
    background = estimate_background(pattern.two_theta_deg, pattern.counts)
    quiet = pattern.two_theta_deg < 20.0  # no reflections of these phases below 20° with Cu radiation
    assert np.median(pattern.counts[quiet] - background[quiet]) == pytest.approx(0.0, abs=3 * np.sqrt(
        np.median(background[quiet])))


def test_agent_reports_each_sample(spread: list[SpreadSample]) -> None:
    agent = DemixingAgent()
    for sample in spread[:15]:
        agent.tell(sample.pattern)
    reports = agent.report()
    assert len(reports) == 15
    k = int(reports[0].quantities["n_components"].value)
    assert k == agent.last_demixing.n_components
    assert {f"component_{i}_share" for i in range(k)} <= set(reports[0].quantities)


def test_max_normalised_patterns_demix_like_counts(spread: list[SpreadSample]) -> None:
    """The same spread, each pattern divided by its maximum (as many real datasets are shared): the counting scale
    is inferred from the noise, so the components and regions are those of the counts."""
    from analysis.demixing import counting_scale

    counts = np.stack([s.pattern.counts for s in spread])
    assert 0.7 < counting_scale(counts) < 1.4  # real counts: one count per unit
    normalised = counts / counts.max(axis=1, keepdims=True)
    scale = counting_scale(normalised)
    assert 0.7 < scale / float(np.median(counts.max(axis=1))) < 1.4  # about each pattern's peak count
    x = spread[0].pattern.two_theta_deg
    as_counts = demix(counts, x)
    as_normalised = demix(normalised, x)
    assert as_normalised.n_components == as_counts.n_components == 3
    names = list(STRUCTURES)
    assert _region_accuracy(as_normalised, spread, names) >= _region_accuracy(as_counts, spread, names) - 0.05
    with pytest.raises(ValueError, match="no counting noise"):
        demix(np.ones_like(counts) + np.linspace(0, 1, counts.shape[1]), x)
