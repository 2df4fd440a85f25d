"""The acquisition optimiser's starting points: global Sobol samples plus a search around the incumbents."""

from __future__ import annotations

import torch
from botorch.acquisition import AcquisitionFunction
from torch import Tensor

from agents.planner import ParameterSpec
from agents.planner.optimize import initial_conditions, optimize_point
from agents.planner.problem import PlannerConfig
from agents.planner.space import DTYPE, SearchSpace

PEAK = torch.tensor([0.6180, 0.3820, 0.7071], dtype=DTYPE)
WIDTH = 0.004


class NarrowPeak(AcquisitionFunction):
    """exp(-|x - PEAK|^2 / (2 WIDTH^2)): flat (zero in float64) everywhere but a ball of ~0.02 around PEAK,
    like an improvement that lives only on a thin ridge along a constraint boundary."""

    def __init__(self) -> None:
        torch.nn.Module.__init__(self)

    def forward(self, X: Tensor) -> Tensor:
        return torch.exp(-((X[..., 0, :] - PEAK) ** 2).sum(-1) / (2 * WIDTH**2))


SPACE = SearchSpace([ParameterSpec(name, 0.0, 1.0) for name in ("a", "b", "c")])
CONFIG = PlannerConfig(raw_samples=64, num_restarts=4, local_search=True)
EMPTY = torch.empty(0, 3, dtype=DTYPE)


def test_the_optimiser_finds_a_narrow_peak_next_to_an_incumbent_that_global_samples_miss():
    near = (PEAK + torch.tensor([0.012, -0.008, 0.010], dtype=DTYPE)).unsqueeze(0)
    torch.manual_seed(0)
    x, value = optimize_point(NarrowPeak(), SPACE, CONFIG, {}, EMPTY, incumbents=near)
    assert x is not None and value is not None
    assert float((x - PEAK).abs().max()) < 1e-3 and value > 0.99
    torch.manual_seed(0)
    _, blind = optimize_point(NarrowPeak(), SPACE, CONFIG, {}, EMPTY, incumbents=None)
    assert blind is not None and blind < 1e-6  # 64 global samples in the cube never land in the ball


def test_starting_points_hold_fixed_values_stay_in_the_cube_and_include_the_best_sample():
    torch.manual_seed(1)
    incumbents = torch.tensor([[0.99, 0.01, 0.5], [0.6, 0.4, 0.7]], dtype=DTYPE)
    starts = initial_conditions(NarrowPeak(), 3, CONFIG, {2: 0.7071}, incumbents)
    assert starts.shape == (CONFIG.num_restarts, 1, 3)
    assert bool(((starts >= 0) & (starts <= 1)).all())
    assert torch.allclose(starts[..., 2], torch.full_like(starts[..., 2], 0.7071))
    assert float(NarrowPeak()(starts[:1])) == float(NarrowPeak()(starts).max())


def test_the_planner_searches_around_its_best_feasible_points_not_its_best_infeasible_ones():
    from agents.planner import BoTorchPlanner, ObjectiveSpec, Observation, OutcomeConstraintSpec

    told = [  # size grows with T, but rutile forms above T = 0.6: the largest sizes are infeasible
        Observation({"T": t}, {"size": 10 * t, "rutile": 0.0 if t < 0.6 else 1.0})
        for t in (0.05, 0.2, 0.35, 0.5, 0.55, 0.7, 0.85, 0.95)
    ]
    planner = BoTorchPlanner(
        [ParameterSpec("T", 0.0, 1.0)],
        [ObjectiveSpec("size")],
        [OutcomeConstraintSpec("rutile", "<=", 0.1)],
        seed=0,
        n_initial=2,
        local_search=True,
        raw_samples=32,
        num_restarts=2,
    )
    planner.tell(told)
    (proposal,) = planner.ask()
    training = planner._training(planner._encoded_observations())
    assert training is not None and planner.model is not None
    best = planner._incumbents(planner.model, training)
    assert [round(float(x), 2) for x in best[:, 0]] == [0.55, 0.5, 0.35]
    assert 0.5 < proposal.conditions["T"] < 0.7  # on the boundary, between the best feasible and infeasible
