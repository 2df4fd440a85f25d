"""One runner per campaign: a lock row in the campaign database, kept alive by a heartbeat.

A second ``crucible run`` / ``resume`` of a campaign that is running (on this host or another sharing the
database), or ``--fresh`` while it runs, is refused with one line naming the host and process that hold it. The
lock works the same on SQLite and PostgreSQL: taking it is an INSERT (the primary key refuses a second one), and
taking over a lock whose heartbeat stopped is a compare-and-set UPDATE on the old holder's row, so two runners
racing for an expired lock cannot both win. A crashed runner's lock expires after ``expiry_s`` without a
heartbeat, at once if it was held by a process of this host that no longer exists.

The lock is re-entrant within a process: the CLI takes it before it starts the simulated lab, and the Prefect flow
it then runs finds it already held.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from datetime import UTC, datetime
from types import TracebackType

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select

from orchestrator.outcomes import CampaignError
from orchestrator.store import Store

__all__ = ["CampaignLocked", "RunnerLock", "RunnerLockRecord"]


class CampaignLocked(CampaignError):
    """Another runner holds the campaign; the message names it."""


class RunnerLockRecord(SQLModel, table=True):
    __tablename__ = "runner_lock"
    campaign_name: str = Field(primary_key=True)
    holder: str  # "host:pid:token"
    heartbeat_at: datetime
    acquired_at: datetime


_held: dict[tuple[str, str], RunnerLock] = {}  # (database url, campaign name) -> this process's lock
_held_guard = threading.Lock()


def _now() -> datetime:
    return datetime.now(UTC)


def _age_s(stamp: datetime) -> float:
    """Seconds since ``stamp`` (read back naive from SQLite, aware from PostgreSQL; both UTC)."""
    return (_now() - (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC))).total_seconds()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunnerLock:
    """Hold campaign ``name`` in ``store`` for as long as the context lasts.

    Args:
        store: the campaign database.
        name: the campaign's name (a lock survives ``--fresh`` recreating the campaign).
        heartbeat_s: how often the holder renews the lock.
        expiry_s: how long without a heartbeat before another runner may take the lock over.
    """

    def __init__(self, store: Store, name: str, heartbeat_s: float = 5.0, expiry_s: float = 30.0) -> None:
        self.store = store
        self.name = name
        self.heartbeat_s = heartbeat_s
        self.expiry_s = expiry_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._depth = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the context ------------------------------------------------------------------------------------------
    def __enter__(self) -> RunnerLock:
        key = (self.store.url, self.name)
        with _held_guard:
            held = _held.get(key)
            if held is not None and held is not self:
                held._depth += 1
                self._delegate = held
                return self
            self._delegate = None
        self.acquire()
        with _held_guard:
            _held[key] = self
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        key = (self.store.url, self.name)
        with _held_guard:
            if self._delegate is not None:
                self._delegate._depth -= 1
                return
            _held.pop(key, None)
        self.release()

    # --- taking and giving back -------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the lock or raise :class:`CampaignLocked` naming who holds it."""
        RunnerLockRecord.metadata.create_all(self.store.engine, tables=[RunnerLockRecord.__table__])  # type: ignore[attr-defined]
        now = _now()
        try:
            self.store.add(
                RunnerLockRecord(campaign_name=self.name, holder=self.holder, heartbeat_at=now, acquired_at=now)
            )
        except IntegrityError:
            current = self._current()
            if current is None or not self._expired(current) or not self._take_over(current):
                current = self._current()
                raise CampaignLocked(self._refusal(current)) from None
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lock-{self.name}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self.store.session() as session:
            record = session.get(RunnerLockRecord, self.name)
            if record is not None and record.holder == self.holder:
                session.delete(record)
                session.commit()

    # --- inside ---------------------------------------------------------------------------------------------
    def _current(self) -> RunnerLockRecord | None:
        with self.store.session() as session:
            return session.exec(select(RunnerLockRecord).where(RunnerLockRecord.campaign_name == self.name)).first()

    def _expired(self, record: RunnerLockRecord) -> bool:
        host, _, rest = record.holder.partition(":")
        pid = rest.partition(":")[0]
        if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
            return True  # its process is gone: no need to wait for the heartbeat to stop counting
        return _age_s(record.heartbeat_at) > self.expiry_s

    def _take_over(self, old: RunnerLockRecord) -> bool:
        now = _now()
        statement = (
            update(RunnerLockRecord)
            .where(RunnerLockRecord.campaign_name == self.name)  # type: ignore[arg-type]
            .where(RunnerLockRecord.holder == old.holder)  # type: ignore[arg-type]
            .where(RunnerLockRecord.heartbeat_at == old.heartbeat_at)  # type: ignore[arg-type]
            .values(holder=self.holder, heartbeat_at=now, acquired_at=now)
        )
        with self.store.engine.begin() as connection:
            return connection.execute(statement).rowcount == 1

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            statement = (
                update(RunnerLockRecord)
                .where(RunnerLockRecord.campaign_name == self.name)  # type: ignore[arg-type]
                .where(RunnerLockRecord.holder == self.holder)  # type: ignore[arg-type]
                .values(heartbeat_at=_now())
            )
            try:
                with self.store.engine.begin() as connection:
                    connection.execute(statement)
            except Exception:  # noqa: BLE001 - a database hiccup; the next beat tries again
                continue

    def _refusal(self, record: RunnerLockRecord | None) -> str:
        if record is None:
            return f"campaign {self.name!r} could not be locked in {self.store.url}; try again"
        host, _, rest = record.holder.partition(":")
        pid = rest.partition(":")[0]
        age = _age_s(record.heartbeat_at)
        return (
            f"campaign {self.name!r} is already being run by process {pid} on {host} (since "
            f"{record.acquired_at:%Y-%m-%d %H:%M:%S} UTC, last heartbeat {age:.0f} s ago); stop it first, or wait "
            f"{max(self.expiry_s - age, 0):.0f} s if it has died"
        )
