"""The search space encoding, designs and spec validation (no models involved)."""

from __future__ import annotations

import pytest
import torch

from agents.planner import LinearConstraintSpec, ObjectiveSpec, ParameterSpec, SpecError
from agents.planner.design import Design
from agents.planner.space import SearchSpace

MIXED = [
    ParameterSpec("T", 300.0, 900.0, unit="degC"),
    ParameterSpec("t", 0.1, 100.0, log_scale=True, unit="h"),
    ParameterSpec("n", 1, 4, kind="integer"),
    ParameterSpec("m", 1, 1000, kind="integer", log_scale=True),
    ParameterSpec("precursor", kind="categorical", choices=("nitrate", "acetate", "chloride")),
]


def test_encode_decode_round_trip_every_kind():
    space = SearchSpace(MIXED)
    c = {"T": 600.0, "t": 1.0, "n": 3, "m": 10, "precursor": "acetate"}
    x = space.encode(c)
    assert x.shape == (5,) and x.dtype == torch.double
    assert float(x[0]) == pytest.approx(0.5)
    assert float(x[1]) == pytest.approx(1 / 3)  # log10: -1 .. 2
    assert float(x[2]) == pytest.approx(2.5 / 4)  # bin centre of level 3 of 1..4
    assert float(x[4]) == pytest.approx(1.5 / 3)
    back = space.decode(x)
    assert back["T"] == pytest.approx(600.0) and back["t"] == pytest.approx(1.0)
    assert back["n"] == 3 and isinstance(back["n"], int) and back["m"] == 10 and back["precursor"] == "acetate"


def test_uniform_cube_decodes_to_uniform_levels():
    space = SearchSpace([ParameterSpec("n", 1, 4, kind="integer")])
    u = torch.linspace(0.001, 0.999, 400).unsqueeze(-1)
    levels = [space.decode(row)["n"] for row in u]
    assert [levels.count(v) for v in (1, 2, 3, 4)] == [100, 100, 100, 100]


def test_design_is_prefix_consistent_and_snapped():
    space = SearchSpace(MIXED)
    d = Design(space, seed=3)
    full = d.points(0, 12)
    assert torch.equal(full[5:9], d.points(5, 4))
    assert torch.equal(space.snap(full), full)
    r = Design(space, seed=3, method="random")
    assert torch.equal(r.points(0, 12)[7:], r.points(7, 5))


def test_a_centre_first_design_starts_at_the_centre_then_continues_the_same_sequence():
    space = SearchSpace(MIXED)
    centred, plain = Design(space, seed=3, center_first=True), Design(space, seed=3)
    first = space.decode(centred.points(0, 1)[0])
    assert first["T"] == pytest.approx(600.0) and first["t"] == pytest.approx(10 ** 0.5)  # geometric centre
    assert torch.equal(centred.points(1, 6), plain.points(0, 6))
    assert torch.equal(centred.points(0, 8)[3:], centred.points(3, 5))  # still prefix-consistent


def test_linear_equality_design_sums_to_one():
    params = [ParameterSpec(n, 0.0, 1.0) for n in ("a", "b", "c")]
    space = SearchSpace(params, [LinearConstraintSpec(("a", "b", "c"), (1, 1, 1), "==", 1.0)])
    d = Design(space, seed=0)
    X = d.points(60, 10)  # crosses a block boundary
    assert torch.allclose(X.sum(-1), torch.ones(10, dtype=torch.double), atol=1e-6)
    assert torch.equal(X[4:], d.points(64, 6))
    fixed = space.fixed_features({"a": 0.5})
    Xf = d.points(0, 5, fixed)
    assert torch.allclose(Xf[:, 0], torch.full((5,), 0.5, dtype=torch.double))
    assert torch.allclose(Xf.sum(-1), torch.ones(5, dtype=torch.double), atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ParameterSpec("x", 1.0, 0.0),
        lambda: ParameterSpec("x", 0.0, 1.0, log_scale=True),
        lambda: ParameterSpec("x", kind="categorical"),
        lambda: ParameterSpec("x", 0.5, 2.0, kind="integer"),
        lambda: ObjectiveSpec("y", "target"),
        lambda: SearchSpace([ParameterSpec("x", 0.0, 1.0)] * 2),
        lambda: SearchSpace(
            [ParameterSpec("x", 1.0, 9.0, log_scale=True)], [LinearConstraintSpec(("x",), (1,), "<=", 2)]
        ),
    ],
)
def test_invalid_specs_are_rejected_with_a_spec_error(make):
    with pytest.raises(SpecError):
        make()


def test_public_names_are_exported_and_the_state_is_plain_json():
    import json

    import numpy as np

    import agents.planner as planner_pkg
    from agents.planner import BoTorchPlanner, Observation

    for name in planner_pkg.__all__:
        assert getattr(planner_pkg, name) is not None
    p = BoTorchPlanner(MIXED, [ObjectiveSpec("y")], seed=0)
    c = {"T": np.float64(500.0), "t": 2.0, "n": np.int64(2), "m": 7, "precursor": "nitrate"}
    p.tell([Observation(c, {"y": np.float64(1.5)})])
    state = json.loads(json.dumps(p.state_dict()))
    assert state["observations"][0]["conditions"]["n"] == 2
    assert BoTorchPlanner.from_state_dict(state).observations[0].outcomes == {"y": 1.5}
