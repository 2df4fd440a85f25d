"""Issue 15: the loop is closed. After the initial design every proposal is made by the model, which has seen
every result but those of at most ``max_in_flight - 1`` experiments still under way, even when the synthesiser is
instant (``time_factor: 0``) and could otherwise plan the whole budget before the first analysis returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.campaign import Campaign
from orchestrator.lab import Lab
from orchestrator.scheduler import Scheduler, ThreadExecutor
from orchestrator.simulated_lab import SimulatedLab
from orchestrator.spec import CampaignFileError, parse_campaign
from orchestrator.store import ExperimentStatus, Store
from tests.conftest import example_campaign, free_tcp_address

INITIAL = 5


def closed_loop_campaign(name: str, experiments: int, synthesisers: int = 1, **budget: Any) -> dict[str, Any]:
    data = example_campaign(
        name=name,
        budget={"experiments": experiments, "batch_size": 1, **budget},
        planner={"name": "botorch", "initial_experiments": INITIAL, "raw_samples": 64, "num_restarts": 2},
    )
    for i in range(1, synthesisers):
        data["instruments"][f"furnace-{i + 1}"] = {"kind": "synthesiser", "address": free_tcp_address(), "timeout_s": 5}
    assert data["simulation"]["time_factor"] == 0.0  # an instant synthesiser: the case that left the loop open
    return data


def run_campaign(data: dict[str, Any], tmp_path: Path) -> tuple[Campaign, Store]:
    spec = parse_campaign(data)
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    with SimulatedLab(spec, tmp_path / "tray"), Lab.from_spec(spec) as lab:
        campaign = Campaign.open(spec, store, lab)
        executor = ThreadExecutor()
        Scheduler(campaign, executor).run()
        executor.close()
        campaign.finish()
    return campaign, store


def assert_closed_loop(campaign: Campaign, store: Store, max_in_flight: int) -> None:
    experiments = campaign.experiments()
    proposals = store.proposals(campaign.id)
    assert all(e.status == ExperimentStatus.ANALYSED for e in experiments)
    for experiment in experiments:
        proposal = proposals[experiment.id]
        if experiment.index < INITIAL:
            assert not proposal.model_made, f"experiment {experiment.index} is part of the initial design"
            continue
        assert proposal.model_made, f"experiment {experiment.index} was proposed by {proposal.strategy}"
        seen = proposal.analysed_seen + proposal.failed_seen  # type: ignore[operator]
        assert seen >= experiment.index - max_in_flight, (experiment.index, seen)
        assert len(proposal.pending) <= max_in_flight - 1, (experiment.index, proposal.pending)
        # what it saw is exactly the experiments before it that were not pending
        assert seen + len(proposal.pending) == experiment.index


def test_every_proposal_after_the_initial_design_is_made_with_the_results_in(tmp_path: Path) -> None:
    campaign, store = run_campaign(closed_loop_campaign("closed", 12), tmp_path)
    assert len(campaign.experiments()) == 12
    assert campaign.max_in_flight == 1  # one synthesiser
    assert_closed_loop(campaign, store, max_in_flight=1)
    assert campaign.record.status == "finished"


def test_two_synthesisers_keep_two_in_flight_and_pass_the_other_as_pending(tmp_path: Path) -> None:
    campaign, store = run_campaign(closed_loop_campaign("two", 7, synthesisers=2), tmp_path)
    assert campaign.max_in_flight == 2
    assert_closed_loop(campaign, store, max_in_flight=2)
    made_on = {store.step_result(e.id, "synthesis").instrument for e in campaign.experiments()}  # type: ignore[union-attr]
    assert made_on == {"furnace", "furnace-2"}


def test_max_in_flight_from_the_campaign_file_and_against_the_batch_size() -> None:
    spec = parse_campaign(closed_loop_campaign("bounded", 8, max_in_flight=3))
    assert spec.max_in_flight() == 3
    assert parse_campaign(closed_loop_campaign("batch", 8, batch_size=4)).max_in_flight() == 4
    with pytest.raises(CampaignFileError, match="max_in_flight.*below batch_size"):
        parse_campaign(closed_loop_campaign("bad", 8, batch_size=4, max_in_flight=2))
    with pytest.raises(CampaignFileError, match="max_in_flight"):
        parse_campaign(closed_loop_campaign("zero", 8, max_in_flight=0))
