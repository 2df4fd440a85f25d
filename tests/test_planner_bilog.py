"""The bilog scale for constrained outcomes (opt-in, as Ax's BilogY): exact inverse, bound kept, original-unit
predictions."""

from __future__ import annotations

import pytest
import torch

from agents.planner import BoTorchPlanner, ObjectiveSpec, Observation, OutcomeConstraintSpec, ParameterSpec
from agents.planner.bilog import bilog, bilog_variance, inverse_bilog, inverse_bilog_std


def test_bilog_keeps_the_bound_and_order_and_inverts_exactly() -> None:
    y = torch.tensor([-3.0, 0.0, 0.05, 0.1, 0.2, 1.0, 40.0], dtype=torch.double)
    z = bilog(y, 0.1)
    assert float(z[3]) == 0.1 and bool((z.diff() > 0).all())
    assert torch.allclose(inverse_bilog(z, 0.1), y)
    assert float(z[-1]) == pytest.approx(0.1 + torch.log1p(torch.tensor(39.9)).item())  # far values compressed
    var = torch.full_like(y, 1e-4)
    assert float(bilog_variance(y, var, 0.1)[3]) == pytest.approx(1e-4)  # slope 1 at the bound
    assert float(bilog_variance(y, var, 0.1)[-1]) < 1e-6
    assert float(inverse_bilog_std(z, bilog_variance(y, var, 0.1).sqrt(), 0.1)[-1]) == pytest.approx(1e-2)


def test_the_planner_fits_the_constraint_on_the_bilog_scale_and_reports_original_units() -> None:
    params = [ParameterSpec("T", 0.0, 1.0)]
    told = [
        Observation({"T": t}, {"size": 10 * t, "rutile": r}, {"size": 0.01, "rutile": 1e-5})
        for t, r in [(0.1, 0.0), (0.3, 0.01), (0.5, 0.08), (0.7, 0.9), (0.9, 1.0)]
    ]
    constraint = [OutcomeConstraintSpec("rutile", "<=", 0.1)]
    for on in (False, True):
        planner = BoTorchPlanner(
            params, [ObjectiveSpec("size")], constraint, seed=0, n_initial=2, bilog=on, raw_samples=32, num_restarts=2
        )
        planner.tell(told)
        (proposal,) = planner.ask()
        model = planner.model
        fitted = model.outcome_transform.untransform(model.train_targets.T)[0][:, 1]  # type: ignore[union-attr]
        expected = torch.tensor([0.0, 0.01, 0.08, 0.9, 1.0], dtype=torch.double)
        assert torch.allclose(fitted, bilog(expected, 0.1) if on else expected)
        mean, sd = proposal.predicted["rutile"]
        assert -0.2 < mean < 1.2 and sd > 0  # original units, not the bilog scale
        assert proposal.conditions["T"] < 0.7  # the fitted constraint keeps the proposal feasible
