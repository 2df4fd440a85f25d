"""What the campaign's model expects where nothing was measured: the planner rebuilt from the store as the
campaign itself rebuilds it before each proposal, its Gaussian processes fitted to every told result, and their
posterior mean and standard deviation at given conditions, in the outcomes' own units.

The BoTorch planner fits its models inside ``ask``; :func:`fitted_planner` asks a copy of it once (the same
problem, seed and told data, so the same fit the campaign's next proposal would use) with a small acquisition
search, and reads the model it fitted. Only the planner's public pieces are used (``problem``, ``config``,
``observations``, ``space``, ``model``); the scales its models work on (fractions as logits, constrained outcomes
on the bilog scale if configured) are undone here as the planner undoes them for a proposal's predictions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd
import torch

from agents.planner import BoTorchPlanner, Planner
from agents.planner.acquisition import FEASIBILITY
from agents.planner.bilog import inverse_bilog, inverse_bilog_std
from agents.planner.fractions import inverse_fraction_logit, inverse_fraction_logit_std
from orchestrator.campaign import Campaign
from orchestrator.lab import Lab
from orchestrator.spec import CampaignSpec
from orchestrator.store import CampaignRecord, Store

__all__ = ["SUCCESS_COLUMN", "fitted_planner", "predict", "restored_planner"]

#: The column of the probability that an experiment works (when some failed, the planner models success too).
SUCCESS_COLUMN = "p_success"

#: The acquisition search of the one ``ask`` that fits the models: as small as the planner allows (its result
#: is thrown away; the fit does not depend on it).
_QUICK_SEARCH = {"raw_samples": 1, "num_restarts": 1}


def restored_planner(spec: CampaignSpec, store: Store, record: CampaignRecord) -> Planner:
    """The campaign's planner as the campaign file describes it, told every analysed and failed experiment the
    store holds (those an operator marked bad left out), as :meth:`orchestrator.campaign.Campaign.plan` tells it.
    No instrument is contacted and no analysis agent is built."""
    campaign = Campaign(spec, store, Lab({}), record, agents=[None] * len(spec.steps()))
    planner = campaign.planner
    planner.tell(campaign.observations())
    return planner


def fitted_planner(planner: Planner) -> BoTorchPlanner:
    """A copy of a BoTorch ``planner`` whose ``model`` is fitted to everything it was told.

    Raises:
        ValueError: the planner has no model (Sobol, random, a plug-in), or too few results to fit one (each
            objective needs two successful experiments).
    """
    if not isinstance(planner, BoTorchPlanner):
        name = getattr(planner, "name", type(planner).__name__)
        raise ValueError(f"planner {name!r} has no model to predict with; only the 'botorch' planner models outcomes")
    config = replace(planner.config, allow_repeats=True, **_QUICK_SEARCH)
    twin = BoTorchPlanner.from_problem(planner.problem, config)
    twin.tell(planner.observations)
    with warnings.catch_warnings():  # about the acquisition, whose proposal is thrown away, and torch internals
        warnings.filterwarnings("ignore", message="When all training points are infeasible")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"linear_operator\.")
        twin.ask(1)
    if twin.model is None:
        raise ValueError(
            f"the model needs two successful results for each of {', '.join(planner.problem.outcome_names)}; "
            f"the campaign has {sum(not o.failed for o in planner.observations)} successful experiment(s)"
        )
    return twin


def _bilog_bound(planner: BoTorchPlanner, name: str) -> float | None:
    """The bound around which outcome ``name`` is modelled on the bilog scale, if it is (``PlannerConfig.bilog``:
    constrained outcomes that are neither objectives nor fractions, at their first constraint's bound)."""
    problem = planner.problem
    if not planner.config.bilog or name in {o.name for o in problem.objectives} or name in problem.fractions:
        return None
    return next((c.value for c in problem.constraints if c.name == name), None)


def _in_outcome_units(planner: BoTorchPlanner, name: str, mean: torch.Tensor, std: torch.Tensor) -> tuple[Any, Any]:
    """A posterior mean and standard deviation of outcome ``name`` carried from its model's scale to its units."""
    if name in planner.problem.fractions:
        return inverse_fraction_logit(mean), inverse_fraction_logit_std(mean, std)
    bound = _bilog_bound(planner, name)
    if bound is not None:
        return inverse_bilog(mean, bound), inverse_bilog_std(mean, std, bound)
    return mean, std


def predict(
    spec: CampaignSpec, planner: Planner, conditions: Sequence[Mapping[str, Any]]
) -> pd.DataFrame:
    """The model's posterior at each of ``conditions``: one row per entry, its conditions, then for every modelled
    objective and constraint the mean as ``<step>.<quantity>`` and the standard deviation as
    ``<step>.<quantity>_std`` (the columns of the experiments table), and ``p_success`` when the planner models
    which experiments work (once some failed). Units in ``attrs["units"]``.

    Raises:
        ValueError: see :func:`fitted_planner`; or conditions that lack a parameter or lie outside its choices.
    """
    fitted = fitted_planner(planner)
    assert fitted.model is not None
    X = fitted.space.encode_many(list(conditions))
    with torch.no_grad():
        posterior = fitted.model.posterior(X)
        means, stds = posterior.mean, posterior.variance.clamp_min(0).sqrt()
    names = list(fitted.problem.outcome_names)
    if means.shape[-1] > len(names):
        names.append(FEASIBILITY)
    frame = pd.DataFrame([dict(c) for c in conditions])
    known = {p.name: p.unit for p in spec.parameters if p.unit}
    quantities = spec.quantities()
    for j, name in enumerate(names):
        if name == FEASIBILITY:  # probit classifier: P(success) = Phi(mu / sqrt(1 + sigma^2))
            mu, sd = means[:, j], stds[:, j]
            frame[SUCCESS_COLUMN] = (0.5 * torch.erfc(-mu / torch.sqrt(2 * (1 + sd**2)))).tolist()
            continue
        mean, std = _in_outcome_units(fitted, name, means[:, j], stds[:, j])
        key = spec.quantity_key(name)
        frame[key], frame[key + "_std"] = mean.tolist(), std.tolist()
        unit = quantities[key].unit
        if unit:
            known[key] = known[key + "_std"] = unit
    frame.attrs["units"] = known
    return frame
