"""Persistence of campaigns: campaigns, experiments, samples, readings, analysis results and planner proposals.

sqlmodel tables in one database: a SQLite file by default (``sqlite:///runs/crucible.db``), PostgreSQL by URL
(``postgresql+psycopg2://host/db``). Every write is its own short transaction, committed before the next step
starts, so a crash loses at most the step that was under way.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Column, Text, UniqueConstraint, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError, ProgrammingError
from sqlmodel import Field, Session, SQLModel, create_engine, select

__all__ = [
    "AnalysisRecord",
    "CampaignRecord",
    "InstrumentLeaseRecord",
    "ExperimentRecord",
    "ExperimentStatus",
    "ProposalRecord",
    "ReadingRecord",
    "SampleRecord",
    "StepAnalysisRecord",
    "StepResultRecord",
    "Store",
    "StoreError",
    "sqlite_file",
]


_R = TypeVar("_R", bound=SQLModel)


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


class ExperimentStatus:
    """The lifecycle of one experiment, from proposal to record.

    ``running``: the job of workflow step ``ExperimentRecord.step`` is on ``ExperimentRecord.instrument``.
    ``ran``: that step's job is done and recorded; the next step (or an analysis) is still to come.
    ``analysed``: every step ran and every analysis is recorded; its quantities are the experiment's outcomes.
    """

    PLANNED = "planned"
    RUNNING = "running"
    RAN = "ran"
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
    paused_reason: str | None = None  # why the campaign paused: an operator, or an instrument that refused it
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
    step: int | None = None  # the workflow step running (status running) or last done (ran); None while planned
    approved: bool = True  # False while a planned experiment awaits an operator's approval
    excluded_reason: str | None = None  # set when an operator marks the experiment bad: the planner forgets it
    conditions_json: str = Field(sa_column=Column(Text, nullable=False))
    outcomes_json: str | None = Field(default=None, sa_column=Column(Text))
    failure_reason: str | None = None
    job_attempt: int | None = None  # > 0 after an emergency stop aborted its job: the next one gets a new job id
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)

    @property
    def conditions(self) -> dict[str, Any]:
        return json.loads(self.conditions_json)

    @property
    def outcomes(self) -> dict[str, dict[str, float]]:
        """``name -> {"value": ..., "std": ...}`` once analysed."""
        return json.loads(self.outcomes_json) if self.outcomes_json else {}


class InstrumentLeaseRecord(SQLModel, table=True):
    """The lease token a campaign holds on one of its instruments, so the same campaign recovers it after a crash."""

    __tablename__ = "instrument_lease"
    campaign_name: str = Field(primary_key=True)
    instrument: str = Field(primary_key=True)
    token: str


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


class StepResultRecord(SQLModel, table=True):
    """What one workflow step's job returned: the instrument's result, and its reading when it measured one."""

    __tablename__ = "step_result"
    __table_args__ = (UniqueConstraint("experiment_id", "step"),)
    id: str = Field(default_factory=_new_id, primary_key=True)
    experiment_id: str = Field(foreign_key="experiment.id", index=True)
    step: str
    step_index: int
    sample_id: str
    instrument: str
    job_id: str
    result_json: str = Field(sa_column=Column(Text, nullable=False))
    reading_kind: str | None = None
    created_at: datetime = Field(default_factory=_now)

    @property
    def result(self) -> dict[str, Any]:
        return json.loads(self.result_json)  # type: ignore[no-any-return]

    @property
    def reading(self) -> dict[str, Any] | None:
        """The reading's ``as_dict`` form, if the step measured one."""
        return self.result.get("reading") if self.reading_kind else None


class StepAnalysisRecord(SQLModel, table=True):
    """The quantities an analysis agent found in one step's reading (``name -> {"value", "std"}``)."""

    __tablename__ = "step_analysis"
    __table_args__ = (UniqueConstraint("experiment_id", "step"),)
    id: str = Field(default_factory=_new_id, primary_key=True)
    experiment_id: str = Field(foreign_key="experiment.id", index=True)
    step: str
    agent: str
    quantities_json: str = Field(sa_column=Column(Text, nullable=False))
    warnings_json: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=_now)

    @property
    def quantities(self) -> dict[str, dict[str, float]]:
        return json.loads(self.quantities_json)  # type: ignore[no-any-return]


class StoreError(RuntimeError):
    """A database Crucible cannot use (not SQLite, truncated or damaged, another application's); the message names
    the file and the problem."""


_SQLITE_MAGIC = b"SQLite format 3\x00"
#: SQLite files up to this size get SQLite's full consistency check when opened (milliseconds for a campaign's
#: database); larger ones only the header and size checks.
_QUICK_CHECK_MAX_BYTES = 256 * 1024 * 1024


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL; None for an in-memory database or another database."""
    if not url.startswith("sqlite:///"):
        return None
    name = url.removeprefix("sqlite:///").split("?", 1)[0]
    return None if name in ("", ":memory:") or name.startswith("file:") else Path(name)


def _check_sqlite_header(path: Path) -> None:
    """Refuse a file that is not a whole SQLite database: a directory, an empty (0-byte) file, another format, a
    file shorter than its header says. Read directly, before SQLite opens (and would change) the file."""
    if path.is_dir():
        raise StoreError(f"database {path}: a directory, not a SQLite file")
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return  # a crash left a write-ahead log: SQLite recovers the file from it (and quick_check reads through it)
    for _ in range(10):  # another process may have just created the file and be writing its first page
        size = path.stat().st_size
        if size > 0:
            break
        time.sleep(0.1)
    else:
        raise StoreError(
            f"database {path}: the file is empty (0 bytes), not a Crucible database; delete it to start a new one"
        )
    for attempt in range(3):
        try:
            with path.open("rb") as handle:
                header = handle.read(100)
            size = path.stat().st_size
        except OSError as error:
            raise StoreError(f"database {path}: cannot read ({error.strerror or error})") from None
        if not header.startswith(_SQLITE_MAGIC):
            raise StoreError(f"database {path}: not a SQLite database (the file starts with {header[:16]!r})")
        if len(header) < 100:
            raise StoreError(f"database {path}: truncated: {size} bytes, less than a SQLite header")
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = int.from_bytes(header[28:32], "big")
        header_size_valid = header[24:28] == header[92:96]  # the in-header size is current (SQLite >= 3.7.0)
        if not (header_size_valid and size < pages * page_size):
            return
        if attempt < 2:
            time.sleep(0.1)  # a checkpoint of another process may be extending the file right now
    raise StoreError(f"database {path}: truncated: its header promises {pages * page_size} bytes, the file has {size}")


def _check_sqlite_contents(path: Path) -> None:
    """Refuse a SQLite file that is damaged (SQLite's quick_check) or another application's (tables, but none of
    Crucible's; or Crucible's table names without their columns). Only reads (SQLite itself may recover the
    write-ahead log of a campaign killed mid-write)."""
    try:
        # not ``mode=ro``: a read-only connection cannot rebuild the write-ahead log's index of a campaign killed
        # mid-write (or read one another process is writing) and reports such a healthy file as malformed
        connection = sqlite3.connect(path, timeout=10)
    except sqlite3.Error:
        return  # SQLite itself reports why it cannot open the file below
    try:
        if path.stat().st_size <= _QUICK_CHECK_MAX_BYTES:
            report = " ".join(str(row[0]) for row in connection.execute("PRAGMA quick_check(3)"))
            if report != "ok":
                found = " ".join(report.replace("*** in database main ***", "").split())
                raise StoreError(f"database {path}: damaged (SQLite's check finds: {found})")
        query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        tables = sorted(row[0] for row in connection.execute(query))
        ours = {table.name: table for table in SQLModel.metadata.sorted_tables}
        if tables and not set(tables) & set(ours):
            shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
            raise StoreError(
                f"database {path}: another application's SQLite database (tables {shown}; none of Crucible's "
                f"{', '.join(sorted(ours))}); give Crucible its own file"
            )
        for name in set(tables) & set(ours):
            present = {row[1] for row in connection.execute(f'PRAGMA table_info("{name}")')}
            needed = [c.name for c in ours[name].columns if not c.nullable and c.name not in present]
            if needed:
                raise StoreError(
                    f"database {path}: table {name!r} lacks column(s) {', '.join(needed)}: not Crucible's table, "
                    "or a damaged database"
                )
    except sqlite3.OperationalError:
        return  # locked by a writer, or a log to recover that a read-only look cannot: SQLite itself decides below
    except sqlite3.DatabaseError as error:  # "file is not a database", "database disk image is malformed"
        raise StoreError(f"database {path}: damaged ({error})") from None
    finally:
        connection.close()


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
                raise StoreError(
                    f"database {engine.url}: table {table.name!r} lacks column {column.name!r}, which cannot be "
                    "added: not a Crucible database, or a damaged one"
                )
            kind = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as connection:
                    connection.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))
            except (OperationalError, ProgrammingError):
                pass  # another process added it first


class Store:
    """A handle on the campaign database; ``Store("sqlite:///runs/crucible.db")``."""

    def __init__(self, url: str) -> None:
        """Open (or create) the database at ``url``.

        Raises:
            StoreError: the file is not a SQLite database, is empty (0 bytes) though it existed, is truncated or
                damaged, or belongs to another application; or the database cannot be used.
        """
        self.url = url
        path = sqlite_file(url)
        if path is not None:
            if path.exists():
                _check_sqlite_header(path)
                _check_sqlite_contents(path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
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
        except DatabaseError as error:
            self.engine.dispose()
            raise StoreError(f"database {path or self.engine.url}: cannot be used ({error.orig})") from None

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
            tables = (StepAnalysisRecord, StepResultRecord, AnalysisRecord, ReadingRecord, SampleRecord, ProposalRecord)
            for table in tables:
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

    # --- workflow steps ------------------------------------------------------------------------------------
    def step_results(self, experiment_id: str) -> list[StepResultRecord]:
        """What each step of an experiment returned so far, in workflow order."""
        with self.session() as session:
            query = select(StepResultRecord).where(StepResultRecord.experiment_id == experiment_id)
            return list(session.exec(query.order_by(StepResultRecord.step_index)))  # type: ignore[arg-type]

    def campaign_step_results(self, campaign_id: str) -> dict[str, list[StepResultRecord]]:
        """What each step of every experiment of a campaign returned, by experiment id, in workflow order (one
        query, for tables of the whole campaign)."""
        with self.session() as session:
            query = (
                select(StepResultRecord)
                .join(ExperimentRecord, ExperimentRecord.id == StepResultRecord.experiment_id)  # type: ignore[arg-type]
                .where(ExperimentRecord.campaign_id == campaign_id)
                .order_by(StepResultRecord.step_index)  # type: ignore[arg-type]
            )
            results: dict[str, list[StepResultRecord]] = {}
            for record in session.exec(query):
                results.setdefault(record.experiment_id, []).append(record)
            return results

    def step_result(self, experiment_id: str, step: str) -> StepResultRecord | None:
        with self.session() as session:
            query = select(StepResultRecord).where(
                StepResultRecord.experiment_id == experiment_id, StepResultRecord.step == step
            )
            return session.exec(query).first()

    def step_analyses(self, experiment_id: str) -> dict[str, StepAnalysisRecord]:
        """The analyses recorded for an experiment, by step name."""
        with self.session() as session:
            query = select(StepAnalysisRecord).where(StepAnalysisRecord.experiment_id == experiment_id)
            return {record.step: record for record in session.exec(query)}

    def migrate_legacy_experiments(self, campaign_id: str, step_names: tuple[str, str]) -> int:
        """Bring a campaign's experiments recorded before workflows were data onto the two-step workflow
        ``step_names`` (synthesis, XRD): statuses ``synthesising/made/measuring/measured`` become ``running/ran``
        of the right step, and their sample and reading records become step results. Returns how many changed."""
        old = {"synthesising": (ExperimentStatus.RUNNING, 0), "made": (ExperimentStatus.RAN, 0),
               "measuring": (ExperimentStatus.RUNNING, 1), "measured": (ExperimentStatus.RAN, 1)}
        changed = 0
        with self.session() as session:
            query = select(ExperimentRecord).where(ExperimentRecord.campaign_id == campaign_id)
            for experiment in session.exec(query):
                if experiment.status not in old:
                    continue
                experiment.status, experiment.step = old[experiment.status]
                sample = session.exec(select(SampleRecord).where(SampleRecord.experiment_id == experiment.id)).first()
                if sample is not None:
                    session.add(StepResultRecord(
                        experiment_id=experiment.id, step=step_names[0], step_index=0, sample_id=sample.id,
                        instrument=sample.instrument, job_id=sample.job_id, result_json=sample.result_json,
                    ))
                query_reading = select(ReadingRecord).where(ReadingRecord.experiment_id == experiment.id)
                reading = session.exec(query_reading).first()
                if reading is not None:
                    session.add(StepResultRecord(
                        experiment_id=experiment.id, step=step_names[1], step_index=1, sample_id=reading.sample_id,
                        instrument=reading.instrument, job_id=reading.job_id, reading_kind=reading.kind,
                        result_json=json.dumps({"reading": json.loads(reading.data_json)}),
                    ))
                session.add(experiment)
                changed += 1
            session.commit()
        return changed

    # --- instrument leases -----------------------------------------------------------------------------------
    def lease_tokens(self, campaign_name: str) -> dict[str, str]:
        """Instrument name -> the lease token campaign ``campaign_name`` last held on it."""
        with self.session() as session:
            query = select(InstrumentLeaseRecord).where(InstrumentLeaseRecord.campaign_name == campaign_name)
            return {r.instrument: r.token for r in session.exec(query)}

    def set_lease_tokens(self, campaign_name: str, tokens: dict[str, str]) -> None:
        """Replace the campaign's recorded lease tokens (none: it holds no lease)."""
        with self.session() as session:
            query = select(InstrumentLeaseRecord).where(InstrumentLeaseRecord.campaign_name == campaign_name)
            for record in session.exec(query):
                session.delete(record)
            session.flush()
            for instrument, token in tokens.items():
                session.add(InstrumentLeaseRecord(campaign_name=campaign_name, instrument=instrument, token=token))
            session.commit()
