"""A recorded campaign, opened for reading: its experiments as a table, what each measured, its best results, and
what its model expects elsewhere.

:func:`open_campaign` reads the campaign database (SQLite or PostgreSQL, see :mod:`orchestrator.store`); it starts
no instrument, lab, flow or server and changes no record (a SQLite file is opened only if it exists; a database
written by an older Crucible gains the current tables' columns, as any Crucible command gives it). The campaign
may still be running: every call reads the database afresh.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd
from numpy.typing import NDArray
from sqlmodel import select

import crucible.predict as prediction
from agents.planner import Planner
from crucible.patterns import reading_arrays
from crucible.table import experiments_frame
from instruments.readings import Reading, reading_from_dict
from orchestrator.spec import CampaignSpec, parse_campaign
from orchestrator.store import CampaignRecord, ExperimentRecord, StepAnalysisRecord, Store, sqlite_file

__all__ = ["CampaignNotFound", "CampaignResults", "ResultsError", "database_url", "open_campaign"]

#: Where ``crucible run`` keeps its database without ``--db``: ``RUNS_DIR/crucible.db``.
DATABASE_FILE = "crucible.db"


class ResultsError(LookupError):
    """What was asked of a campaign's results is not in its database; the message says what is there."""


class CampaignNotFound(ResultsError):
    """No campaign of that name (or no database) where one was looked for; the message lists the campaigns there."""


def database_url(database: str | None = None, runs_dir: str | Path = "runs") -> str:
    """The database a campaign name is looked up in, as ``crucible status NAME`` finds it: ``database``, else
    ``$CRUCIBLE_DATABASE_URL``, else ``sqlite:///RUNS_DIR/crucible.db``."""
    return database or os.environ.get("CRUCIBLE_DATABASE_URL") or f"sqlite:///{Path(runs_dir) / DATABASE_FILE}"


def _is_url(text: str) -> bool:
    return "://" in text


def _open_store(url: str) -> Store:
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise CampaignNotFound(f"no campaign database at {path} (no campaign has run with this --runs-dir or --db)")
    return Store(url)


def open_campaign(
    name_or_url: str,
    *,
    name: str | None = None,
    database: str | None = None,
    runs_dir: str | Path = "runs",
) -> CampaignResults:
    """Open a recorded campaign for reading.

    Args:
        name_or_url: the campaign's name, looked up as ``crucible status NAME`` looks it up (``database``, else
            ``$CRUCIBLE_DATABASE_URL``, else ``RUNS_DIR/crucible.db``); or a database URL (``sqlite:///PATH``,
            ``postgresql+psycopg2://host/db``), with the campaign's ``name`` (which may be left out when the
            database holds one campaign only).
        name: the campaign's name, with a database URL as ``name_or_url``.
        database: a database URL to look the name up in (instead of the runs directory's).
        runs_dir: the directory ``crucible run --runs-dir`` wrote to.

    Raises:
        CampaignNotFound: no such database, or no campaign of that name in it (the message lists those there).
        orchestrator.store.StoreError: the database is damaged or not Crucible's.

    Example:
        >>> results = open_campaign("tio2-anneal", runs_dir="runs/demo")
        >>> results = open_campaign("sqlite:///runs/demo/crucible.db", name="tio2-anneal")
    """
    if _is_url(name_or_url):
        if database is not None:
            raise ValueError("give the database once: as the first argument or as database=, not both")
        url, wanted = name_or_url, name
    else:
        if name is not None:
            raise ValueError(f"name={name!r} goes with a database URL; {name_or_url!r} is already a campaign name")
        url, wanted = database_url(database, runs_dir), name_or_url
    store = _open_store(url)
    try:
        record = _find(store, url, wanted)
        spec = parse_campaign(json.loads(record.spec_json), f"campaign {record.name!r} in {url}")
    except BaseException:
        store.close()
        raise
    return CampaignResults(spec, store, record)


def _find(store: Store, url: str, name: str | None) -> CampaignRecord:
    campaigns = store.campaigns()
    names = ", ".join(repr(c.name) for c in campaigns) or "none"
    if name is None:
        if len(campaigns) == 1:
            return campaigns[0]
        raise CampaignNotFound(f"{url} holds {len(campaigns)} campaigns ({names}): give name=")
    for record in campaigns:
        if record.name == name:
            return record
    raise CampaignNotFound(f"no campaign named {name!r} in {url}; campaigns there: {names}")


class CampaignResults:
    """A recorded campaign, read from its database; see :func:`open_campaign`.

    Experiments are named by their number (``experiment``, the index of :meth:`experiments`), from 0.
    """

    def __init__(self, spec: CampaignSpec, store: Store, record: CampaignRecord) -> None:
        self.spec = spec
        """The campaign file the campaign runs under (as stored)."""
        self.store = store
        self.record = record

    # --- handle ----------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.record.name

    @property
    def url(self) -> str:
        """The database the campaign is read from."""
        return self.store.url

    def close(self) -> None:
        """Give back the database connections."""
        self.store.close()

    def __enter__(self) -> CampaignResults:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<CampaignResults {self.name!r} in {self.url}>"

    # --- the table -------------------------------------------------------------------------------------------
    def _experiment_records(self) -> list[ExperimentRecord]:
        return self.store.experiments(self.record.id)

    def _step_analyses(self) -> dict[str, dict[str, StepAnalysisRecord]]:
        """Every analysis of the campaign, by experiment id and step name, in one query."""
        with self.store.session() as session:
            query = (
                select(StepAnalysisRecord)
                .join(ExperimentRecord, ExperimentRecord.id == StepAnalysisRecord.experiment_id)  # type: ignore[arg-type]
                .where(ExperimentRecord.campaign_id == self.record.id)
            )
            found: dict[str, dict[str, StepAnalysisRecord]] = {}
            for record in session.exec(query):
                found.setdefault(record.experiment_id, {})[record.step] = record
            return found

    def experiments(self) -> pd.DataFrame:
        """One row per experiment (index ``experiment``): its conditions, every quantity ``<step>.<quantity>``
        with ``<step>.<quantity>_std``, whether it is feasible, its status, failure and marked-bad reasons, its
        proposal's strategy and timings; units in ``attrs["units"]``. See :mod:`crucible.table` for every
        column."""
        return experiments_frame(
            self.spec,
            self._experiment_records(),
            self.store.proposals(self.record.id),
            self.store.campaign_step_results(self.record.id),
            self._step_analyses(),
        )

    # --- readings --------------------------------------------------------------------------------------------
    def _experiment(self, index: int) -> ExperimentRecord:
        experiments = self._experiment_records()
        for experiment in experiments:
            if experiment.index == index:
                return experiment
        raise ResultsError(
            f"campaign {self.name!r} has no experiment {index}; it has "
            + (f"experiments 0 to {len(experiments) - 1}" if experiments else "none yet")
        )

    def readings(self, step: str | None = None) -> Iterator[tuple[int, str, Reading]]:
        """Every reading the campaign recorded (of ``step`` only, if given), in experiment and workflow order, as
        ``(experiment, step, reading)``; read one experiment at a time."""
        for experiment in self._experiment_records():
            for result in self.store.step_results(experiment.id):
                if result.reading is not None and (step is None or result.step == step):
                    yield experiment.index, result.step, reading_from_dict(result.reading)

    def reading(self, index: int, step: str | None = None) -> Reading:
        """The reading experiment ``index`` measured in ``step`` (by default its only measuring step), as the
        instrument returned it: a :class:`~instruments.readings.Diffractogram`, ``ScatteringCurve``, ...

        Raises:
            ResultsError: no such experiment, or it has no reading of that step (yet), or several steps measured
                and ``step`` is not given.
        """
        experiment = self._experiment(index)
        results = [r for r in self.store.step_results(experiment.id) if r.reading_kind is not None]
        if step is None:
            if len(results) > 1:
                steps = ", ".join(r.step for r in results)
                raise ResultsError(f"experiment {index} has readings of steps {steps}: give step=")
            if not results:
                legacy = self.store.reading(experiment.id)  # recorded before workflows were data
                if legacy is not None:
                    return reading_from_dict(json.loads(legacy.data_json))
                raise ResultsError(f"experiment {index} ({experiment.status}) has no reading yet")
            chosen = results[0]
        else:
            matching = [r for r in results if r.step == step]
            if not matching:
                measured = ", ".join(r.step for r in results) or "none"
                raise ResultsError(
                    f"experiment {index} has no reading of step {step!r}; steps with a reading: {measured}"
                )
            chosen = matching[0]
        assert chosen.reading is not None
        return reading_from_dict(chosen.reading)

    def reading_arrays(self, index: int, step: str | None = None) -> dict[str, NDArray[Any]]:
        """The arrays of :meth:`reading` by name, e.g. ``two_theta_deg``, ``counts`` and ``sigma`` (counting
        statistics) of a diffractogram."""
        return reading_arrays(self.reading(index, step))

    # --- the best results ------------------------------------------------------------------------------------
    def _counted(self) -> pd.DataFrame:
        """Analysed, feasible experiments no operator marked bad, with every objective determined."""
        frame = self.experiments()
        keys = [self.spec.quantity_key(o.name) for o in self.spec.objectives]
        usable = frame["feasible"] & ~frame["marked_bad"] & frame[keys].notna().all(axis=1)
        return frame[usable]

    def _utilities(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Each objective as a number to maximise (minimise: negated; target: minus the distance)."""
        columns = {}
        for objective in self.spec.objectives:
            key = self.spec.quantity_key(objective.name)
            values = frame[key]
            if objective.direction == "minimize":
                values = -values
            elif objective.direction == "target":
                values = -(values - objective.target).abs()
            columns[objective.name] = values
        return pd.DataFrame(columns, index=frame.index)

    def best(self) -> pd.Series | None:
        """The row of the best feasible experiment for the campaign's objective (as ``crucible report`` finds
        it), or None while no analysed experiment meets every constraint.

        Raises:
            ResultsError: the campaign has several objectives (see :meth:`pareto_front`).
        """
        if len(self.spec.objectives) > 1:
            names = ", ".join(o.name for o in self.spec.objectives)
            raise ResultsError(f"campaign {self.name!r} has several objectives ({names}): use pareto_front()")
        frame = self._counted()
        if frame.empty:
            return None
        return frame.loc[self._utilities(frame).iloc[:, 0].idxmax()]

    def pareto_front(self) -> pd.DataFrame:
        """The feasible experiments no other feasible experiment beats in every objective (and strictly in one):
        the rows of the Pareto front, in experiment order. With one objective, the best row (or none)."""
        frame = self._counted()
        if len(self.spec.objectives) == 1:
            best = self.best()
            return frame.iloc[0:0] if best is None else frame.loc[[best.name]]
        utilities = self._utilities(frame).to_numpy()
        dominated = [bool(((utilities >= u).all(axis=1) & (utilities > u).any(axis=1)).any()) for u in utilities]
        return frame[[not d for d in dominated]]

    # --- the model -------------------------------------------------------------------------------------------
    def planner(self) -> Planner:
        """The campaign's planner, rebuilt from the campaign file and told every analysed and failed experiment
        (not those marked bad), as the campaign tells it before each proposal: ``planner().ask(1)`` is what the
        campaign would propose next with nothing under way. The BoTorch planner fits its model at ``ask``; see
        :meth:`predict` for the model's predictions."""
        return prediction.restored_planner(self.spec, self.store, self.record)

    def predict(self, conditions: Sequence[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
        """What the campaign's model expects at ``conditions`` (dicts of parameter values, or a table with a
        column per parameter, e.g. rows of :meth:`experiments`): one row per entry, the conditions, then for every
        objective and constraint its posterior mean ``<step>.<quantity>`` and standard deviation
        ``<step>.<quantity>_std`` in the quantity's units, and ``p_success`` once some experiment failed.

        The model is fitted as the campaign's next proposal would fit it (same data and seed), which takes a
        second or a few.

        Raises:
            ValueError: a planner without a model (``sobol``, ``random``), fewer than two successful
                experiments, or conditions that lack a parameter.
        """
        if isinstance(conditions, pd.DataFrame):
            names = [p.name for p in self.spec.parameters if p.name in conditions.columns]
            conditions = [{k: _plain(v) for k, v in row.items()} for row in conditions[names].to_dict("records")]
        return prediction.predict(self.spec, self.planner(), conditions)


def _plain(value: Any) -> Any:
    """A table cell as the planner takes a condition (numpy numbers become Python numbers)."""
    return value.item() if hasattr(value, "item") else value
