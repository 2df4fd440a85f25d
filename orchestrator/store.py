"""Persistence of campaigns: campaigns, experiments, samples, readings, analysis results and planner proposals.

sqlmodel tables in one database: a SQLite file by default (``sqlite:///runs/crucible.db``), PostgreSQL by URL
(``postgresql+psycopg2://host/db``). Every write is its own short transaction, committed before the next step
starts, so a crash loses at most the step that was under way.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Column, Text, UniqueConstraint, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlmodel import Field, Session, SQLModel, create_engine, select

__all__ = [
    "AnalysisRecord",
    "CampaignRecord",
    "ExperimentRecord",
    "ExperimentStatus",
    "ProposalRecord",
    "ReadingRecord",
    "SampleRecord",
    "Store",
]


_R = TypeVar("_R", bound=SQLModel)


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


class ExperimentStatus:
    """The lifecycle of one experiment, from proposal to record."""

    PLANNED = "planned"
    SYNTHESISING = "synthesising"
    MADE = "made"
    MEASURING = "measuring"
    MEASURED = "measured"
    ANALYSED = "analysed"
    FAILED = "failed"
    REJECTED = "rejected"  # an operator refused the proposal before any instrument ran it; costs no budget
    TERMINAL = (ANALYSED, FAILED, REJECTED)


class CampaignRecord(SQLModel, table=True):
    __tablename__ = "campaign"
    id: str = Field(default_factory=_new_id, primary_key=True)
    name: str = Field(index=True, unique=True)
    spec_json: str = Field(sa_column=Column(Text, nullable=False))
    status: str = "running"  # running | paused | finished
    budget_experiments: int | None = None  # an operator's new budget; None: the campaign file's
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class ExperimentRecord(SQLModel, table=True):
    __tablename__ = "experiment"
    __table_args__ = (UniqueConstraint("campaign_id", "index"),)
    id: str = Field(default_factory=_new_id, primary_key=True)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    index: int
    sample_id: str
    status: str = ExperimentStatus.PLANNED
    instrument: str | None = None  # the instrument the experiment is on (or was last on)
    approved: bool = True  # False while a planned experiment awaits an operator's approval
    excluded_reason: str | None = None  # set when an operator marks the experiment bad: the planner forgets it
    conditions_json: str = Field(sa_column=Column(Text, nullable=False))
    outcomes_json: str | None = Field(default=None, sa_column=Column(Text))
    failure_reason: str | None = None
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)

    @property
    def conditions(self) -> dict[str, Any]:
        return json.loads(self.conditions_json)

    @property
    def outcomes(self) -> dict[str, dict[str, float]]:
        """``name -> {"value": ..., "std": ...}`` once analysed."""
        return json.loads(self.outcomes_json) if self.outcomes_json else {}


class ProposalRecord(SQLModel, table=True):
    __tablename__ = "proposal"
    id: str = Field(default_factory=_new_id, primary_key=True)
    experiment_id: str = Field(foreign_key="experiment.id", index=True, unique=True)
    strategy: str
    acquisition_value: float | None = None
    predicted_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    # What the planner knew when it proposed: how many analysed (and failed) experiments it was told, and the
    # indices of the experiments still under way, passed as pending points. None on records from before 0.2.
    model_made: bool | None = None  # chosen by the model's acquisition function, not by the initial design
    analysed_seen: int | None = None
    failed_seen: int | None = None
    pending_json: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=_now)

    @property
    def pending(self) -> list[int]:
        """Indices of the experiments under way when this proposal was made."""
        return json.loads(self.pending_json) if self.pending_json else []


class SampleRecord(SQLModel, table=True):
    __tablename__ = "sample"
    id: str = Field(primary_key=True)
    experiment_id: str = Field(foreign_key="experiment.id", index=True, unique=True)
    instrument: str
    job_id: str
    result_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=_now)


class ReadingRecord(SQLModel, table=True):
    __tablename__ = "reading"
    __table_args__ = (UniqueConstraint("experiment_id", "instrument"),)
    id: str = Field(default_factory=_new_id, primary_key=True)
    experiment_id: str = Field(foreign_key="experiment.id", index=True)
    sample_id: str
    instrument: str
    job_id: str
    kind: str
    data_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=_now)


class AnalysisRecord(SQLModel, table=True):
    __tablename__ = "analysis"
    id: str = Field(default_factory=_new_id, primary_key=True)
    experiment_id: str = Field(foreign_key="experiment.id", index=True, unique=True)
    agent: str
    quantities_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=_now)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _add_missing_columns(engine: Engine) -> None:
    """Bring a database written by an earlier Crucible up to the current tables: add the nullable columns it
    lacks (``create_all`` creates missing tables, never missing columns)."""
    inspector = inspect(engine)
    for table in SQLModel.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise RuntimeError(f"table {table.name!r} lacks column {column.name!r}, which cannot be added")
            kind = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as connection:
                    connection.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))
            except (OperationalError, ProgrammingError):
                pass  # another process added it first


class Store:
    """A handle on the campaign database; ``Store("sqlite:///runs/crucible.db")``."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        for attempt in range(5):
            try:
                SQLModel.metadata.create_all(self.engine)
                break
            except (OperationalError, ProgrammingError, IntegrityError):
                # Another process is creating the tables at the same moment (two workers starting on a new
                # database): wait for its transaction, then check again; its tables will do.
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        _add_missing_columns(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # --- campaigns -------------------------------------------------------------------------------------------
    def campaign_by_name(self, name: str) -> CampaignRecord | None:
        with self.session() as session:
            return session.exec(select(CampaignRecord).where(CampaignRecord.name == name)).first()

    def campaigns(self) -> list[CampaignRecord]:
        with self.session() as session:
            return list(session.exec(select(CampaignRecord).order_by(CampaignRecord.created_at)))

    def add(self, *records: SQLModel) -> None:
        """Insert records in one transaction."""
        with self.session() as session:
            for record in records:
                session.add(record)
            session.commit()

    def campaign(self, campaign_id: str) -> CampaignRecord:
        with self.session() as session:
            record = session.get(CampaignRecord, campaign_id)
            if record is None:
                raise KeyError(f"no campaign {campaign_id}")
            return record

    def update_campaign(self, campaign_id: str, **changes: Any) -> CampaignRecord:
        with self.session() as session:
            record = session.get(CampaignRecord, campaign_id)
            if record is None:
                raise KeyError(f"no campaign {campaign_id}")
            for key, value in changes.items():
                setattr(record, key, value)
            record.updated_at = _now()
            session.add(record)
            session.commit()
            return record

    def set_campaign_status(self, campaign_id: str, status: str) -> None:
        self.update_campaign(campaign_id, status=status)

    def delete_campaign(self, campaign_id: str) -> None:
        """Remove a campaign and everything recorded under it."""
        with self.session() as session:
            experiment_ids = [
                e.id for e in session.exec(select(ExperimentRecord).where(ExperimentRecord.campaign_id == campaign_id))
            ]
            for table in (AnalysisRecord, ReadingRecord, SampleRecord, ProposalRecord):
                for row in session.exec(select(table).where(table.experiment_id.in_(experiment_ids))):  # type: ignore[attr-defined]
                    session.delete(row)
            session.flush()
            for row in session.exec(select(ExperimentRecord).where(ExperimentRecord.campaign_id == campaign_id)):
                session.delete(row)
            session.flush()
            campaign = session.get(CampaignRecord, campaign_id)
            if campaign is not None:
                session.delete(campaign)
            session.commit()

    # --- experiments -----------------------------------------------------------------------------------------
    def experiments(self, campaign_id: str) -> list[ExperimentRecord]:
        with self.session() as session:
            query = select(ExperimentRecord).where(ExperimentRecord.campaign_id == campaign_id)
            return list(session.exec(query.order_by(ExperimentRecord.index)))

    def experiment(self, experiment_id: str) -> ExperimentRecord:
        with self.session() as session:
            record = session.get(ExperimentRecord, experiment_id)
            if record is None:
                raise KeyError(f"no experiment {experiment_id}")
            return record

    def update_experiment(self, experiment_id: str, *extra: SQLModel, **changes: Any) -> ExperimentRecord:
        """Change an experiment's fields and insert ``extra`` records, atomically."""
        with self.session() as session:
            record = session.get(ExperimentRecord, experiment_id)
            if record is None:
                raise KeyError(f"no experiment {experiment_id}")
            for key, value in changes.items():
                setattr(record, key, value)
            record.updated_at = _now()
            session.add(record)
            for item in extra:
                session.add(item)
            session.commit()
            return record

    def _of_experiment(self, table: type[_R], experiment_id: str) -> _R | None:
        """The one record of ``table`` that belongs to an experiment, if any."""
        with self.session() as session:
            return session.exec(select(table).where(table.experiment_id == experiment_id)).first()  # type: ignore[attr-defined]

    def proposals(self, campaign_id: str) -> dict[str, ProposalRecord]:
        """Every proposal of a campaign, by experiment id."""
        with self.session() as session:
            query = (
                select(ProposalRecord)
                .join(ExperimentRecord, ExperimentRecord.id == ProposalRecord.experiment_id)  # type: ignore[arg-type]
                .where(ExperimentRecord.campaign_id == campaign_id)
            )
            return {p.experiment_id: p for p in session.exec(query)}

    def proposal(self, experiment_id: str) -> ProposalRecord | None:
        return self._of_experiment(ProposalRecord, experiment_id)

    def sample(self, experiment_id: str) -> SampleRecord | None:
        return self._of_experiment(SampleRecord, experiment_id)

    def reading(self, experiment_id: str) -> ReadingRecord | None:
        return self._of_experiment(ReadingRecord, experiment_id)

    def analysis(self, experiment_id: str) -> AnalysisRecord | None:
        return self._of_experiment(AnalysisRecord, experiment_id)
