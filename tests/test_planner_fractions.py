"""Phase fractions on the logit scale, and the floor on the probability of meeting the outcome constraints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from agents.planner import (
    BoTorchPlanner,
    ObjectiveSpec,
    Observation,
    OutcomeConstraintSpec,
    ParameterSpec,
    SpecError,
)
from agents.planner.acquisition import OutcomeLayout, outcome_constraint_floor
from agents.planner.fractions import (
    FRACTION_FLOOR,
    fraction_logit,
    fraction_logit_variance,
    inverse_fraction_logit,
    inverse_fraction_logit_std,
    logit_of_bound,
)
from orchestrator.campaign import campaign_planner
from orchestrator.spec import load_campaign

FAST = {"raw_samples": 64, "num_restarts": 4, "mc_samples": 64}
T = [ParameterSpec("T", 400.0, 1000.0), ParameterSpec("t", 0.5, 12.0)]
NOISE = 0.003


def rutile(c: dict) -> float:
    """A JMAK-like switch from 0 to 1 between about 650 and 750 degC, earlier for longer anneals."""
    return 1.0 - math.exp(-((math.exp((c["T"] - 700.0) / 15.0) * c["t"] / 6.0) ** 1.5))


def experiment(c: dict, rng: torch.Generator) -> Observation:
    size = 8.0 + 80.0 * (c["T"] - 400.0) / 600.0 * (c["t"] / 12.0) ** 0.5  # largest when hottest and longest
    measured = rutile(c) + NOISE * float(torch.randn((), generator=rng, dtype=torch.double))
    return Observation(c, {"size_nm": size, "rutile_fraction": measured}, {"rutile_fraction": NOISE**2})


def test_logit_round_trip_clamp_and_delta_rule():
    p = torch.tensor([FRACTION_FLOOR, 0.01, 0.1, 0.5, 0.9, 1 - FRACTION_FLOOR], dtype=torch.double)
    assert torch.allclose(inverse_fraction_logit(fraction_logit(p)), p, atol=1e-12)
    # noise can take a measured fraction below 0 or above 1: clamped to the detection limit, never nan
    z = fraction_logit(torch.tensor([-0.004, 1.002], dtype=torch.double))
    assert torch.allclose(z, fraction_logit(torch.tensor([FRACTION_FLOOR, 1 - FRACTION_FLOOR], dtype=torch.double)))
    # delta rule: the variance scales with the squared slope of the logit, 1 / (p (1 - p))
    y, h = torch.tensor([0.2], dtype=torch.double), 1e-6
    slope = (fraction_logit(y + h) - fraction_logit(y - h)) / (2 * h)
    var = fraction_logit_variance(y, torch.tensor([NOISE**2], dtype=torch.double))
    assert var.item() == pytest.approx((slope * NOISE).item() ** 2, rel=1e-6)
    std = inverse_fraction_logit_std(fraction_logit(y), var.sqrt())
    assert std.item() == pytest.approx(NOISE, rel=1e-6)
    assert logit_of_bound("r", 0.1, "bound") == pytest.approx(math.log(0.1 / 0.9))


@pytest.mark.parametrize("value", [0.0, 0.0005, 1.0, 1.5, -0.2])
def test_fraction_bounds_outside_zero_one_are_refused(value):
    with pytest.raises(SpecError, match="must lie between 0.001 and 0.999"):
        BoTorchPlanner(
            T,
            [ObjectiveSpec("size_nm")],
            [OutcomeConstraintSpec("rutile_fraction", "<=", value)],
            fractions=["rutile_fraction"],
        )


def test_fraction_must_be_a_modelled_outcome():
    with pytest.raises(SpecError, match="neither objectives nor constrained"):
        BoTorchPlanner(T, [ObjectiveSpec("size_nm")], fractions=["anatase_fraction"])


def _told_planner(seed: int = 3, **options) -> BoTorchPlanner:
    planner = BoTorchPlanner(
        T,
        [ObjectiveSpec("size_nm")],
        [OutcomeConstraintSpec("rutile_fraction", "<=", 0.1)],
        seed=seed,
        n_initial=6,
        **FAST,
        **options,
    )
    rng = torch.Generator().manual_seed(0)
    grid = [(T_, t) for T_ in (450.0, 550.0, 650.0, 700.0, 750.0, 850.0, 950.0) for t in (1.0, 6.0, 12.0)]
    planner.tell([experiment({"T": T_, "t": t}, rng) for T_, t in grid])
    return planner


def test_fraction_predictions_stay_fractions_and_find_the_plateau():
    planner = _told_planner(fractions=["rutile_fraction"])
    (proposal,) = planner.ask()
    mean, std = proposal.predicted["rutile_fraction"]
    assert 0.0 <= mean <= 1.0 and std >= 0.0
    # the GP was fitted on logits: the constraint bound is logit(0.1), the plateau near logit(1 - 1e-3)
    with torch.no_grad():
        z = planner.model.posterior(torch.tensor([[0.9, 0.7]], dtype=torch.double)).mean[0, 1]  # 940 degC, 8.6 h
    assert inverse_fraction_logit(z).item() > 0.95


def _probability_met(proposal, bound: float = 0.1) -> float:
    """The planner's own probability that ``rutile_fraction <= bound`` at a proposal (logit scale)."""
    mean, std = proposal.predicted["rutile_fraction"]
    z_mean = float(fraction_logit(torch.tensor(mean)))
    z_std = std / (mean * (1 - mean))  # back to the logit scale (delta rule)
    z = (logit_of_bound("rutile_fraction", bound, "bound") - z_mean) / z_std
    return 0.5 * math.erfc(-z / math.sqrt(2))


def test_constraint_floor_penalises_points_likely_out_of_specification():
    planner = _told_planner(fractions=["rutile_fraction"])
    planner.ask()  # fits the model
    floor = outcome_constraint_floor(
        planner.model, planner.problem.modelled_constraints(), OutcomeLayout(("size_nm", "rutile_fraction")), 0.25
    )
    X = torch.tensor([[[0.25, 0.5]], [[0.95, 1.0]]], dtype=torch.double)  # 550 degC / 6 h; 970 degC / 12 h
    cool, hot = floor(X).tolist()
    assert cool == pytest.approx(0.0, abs=1e-3)  # certainly anatase: no penalty
    assert hot < -4.0  # at most a 2 % chance of meeting the bound: the acquisition shrinks by e^-4 or more


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constraint_floor_moves_the_next_proposal_where_the_bound_is_likely_met(seed):
    with_floor = _told_planner(fractions=["rutile_fraction"], seed=seed)  # the floor is on by default
    (proposal,) = with_floor.ask()
    assert _probability_met(proposal) > 0.2, proposal
    assert rutile(proposal.conditions) < 0.5, proposal


def test_fractions_survive_a_restart():
    planner = _told_planner(fractions=["rutile_fraction"])
    state = planner.state_dict()
    assert state["fractions"] == ["rutile_fraction"]
    again = BoTorchPlanner.from_state_dict(state)
    assert again.problem.fractions == ("rutile_fraction",)
    assert [p.conditions for p in again.ask()] == [p.conditions for p in planner.ask()]


def test_campaign_declares_phase_fractions_to_the_planner():
    spec = load_campaign(Path(__file__).resolve().parents[1] / "examples" / "tio2_anneal.yaml")
    planner = campaign_planner(spec)
    assert isinstance(planner, BoTorchPlanner)
    assert planner.problem.fractions == ("rutile_fraction",)  # the constrained one; anatase's is not modelled
