"""The job table of one instrument: one driver run at a time on a worker thread, plus a bounded history.

Jobs are identified by a client-chosen ``job_id``. Submitting a known id never runs the driver again; it
returns the job's current snapshot. A snapshot is the dict the ``job`` command returns::

    {"job_id": str, "state": "running" | "done" | "failed" | "aborted" | "interrupted" | "unknown",
     "result": dict | None, "error": str | None, "progress": float, "progress_message": str,
     "elapsed_s": float | None}

The history lives in a small SQLite database: a file (``journal``) for a server that must answer for its jobs
after a restart, as a real instrument's controller does, else in memory. A job is written there, and committed,
before its driver starts; a job still marked running when the table opens again was interrupted by the restart
and is reported as ``interrupted``, never run again. Finished jobs keep only what ``job`` reports (their params
only as a digest, to recognise a resubmission), so the history's size is bounded by ``history`` results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instruments.drivers import Driver

__all__ = ["JobTable", "JobSnapshot", "Refused", "JOB_STATES", "INTERRUPTED"]

logger = logging.getLogger(__name__)

JOB_STATES = ("running", "done", "failed", "aborted", "interrupted", "unknown")
JobSnapshot = dict[str, Any]
INTERRUPTED = "the instrument's server restarted while this job ran; it did not finish"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    params_digest TEXT NOT NULL,
    state TEXT NOT NULL,
    result_json TEXT,
    error TEXT,
    progress REAL NOT NULL DEFAULT 0,
    progress_message TEXT NOT NULL DEFAULT '',
    started_at REAL NOT NULL,
    finished_at REAL,
    pid INTEGER NOT NULL
)
"""


class Refused(Exception):
    """A command the server understood but will not carry out; becomes an error reply of ``error_type``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


class _Context:
    """The ``JobContext`` handed to ``Driver.run``."""

    def __init__(self, job: _Job, on_progress: Callable[[_Job], None]) -> None:
        self.job_id = job.job_id
        self._job = job
        self._on_progress = on_progress

    @property
    def aborted(self) -> bool:
        return self._job.abort_requested.is_set()

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress ``fraction`` in [0, 1] with an optional message."""
        if not isinstance(fraction, int | float) or not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
            raise ValueError(f"progress fraction must be a number in [0, 1], got {fraction!r}")
        self._job.progress = float(fraction)
        self._job.progress_message = str(message)[:_MAX_MESSAGE_CHARS]
        self._on_progress(self._job)


_MAX_MESSAGE_CHARS = 1000
_MAX_ERROR_CHARS = 4000


@dataclass
class _Job:
    """The running job, held in memory while its driver runs (finished jobs live only in the history)."""

    job_id: str
    params_digest: str
    state: str = "running"
    result: dict[str, Any] | None = None
    error: str | None = None
    progress: float = 0.0
    progress_message: str = ""
    started_at: float = field(default_factory=time.time)
    started_s: float = field(default_factory=time.monotonic)
    finished_s: float | None = None
    abort_requested: threading.Event = field(default_factory=threading.Event)

    def snapshot(self) -> JobSnapshot:
        end = self.finished_s if self.finished_s is not None else time.monotonic()
        return {
            "job_id": self.job_id,
            "state": self.state,
            "result": self.result,
            "error": self.error,
            "progress": self.progress,
            "progress_message": self.progress_message,
            "elapsed_s": round(end - self.started_s, 6),
        }


def params_digest(params: dict[str, Any]) -> str:
    """The SHA-256 of ``params`` in canonical JSON: two submissions of one job must carry the same digest."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class JobTable:
    """Runs one driver job at a time on a worker thread and remembers the last ``history`` jobs.

    Args:
        driver: the driver whose ``run`` is called.
        history: how many jobs are remembered for idempotent resubmission and ``job`` queries.
        on_change: called (from any thread) with a snapshot whenever a job starts, reports progress or ends.
        journal: a SQLite file that keeps the history across restarts (None: in memory, lost on exit).
    """

    def __init__(
        self,
        driver: Driver,
        *,
        history: int = 1000,
        on_change: Callable[[JobSnapshot], None] | None = None,
        journal: str | Path | None = None,
    ) -> None:
        if history < 1:
            raise ValueError(f"history must be at least 1, got {history}")
        self._driver = driver
        self._history = history
        self._on_change = on_change
        self._lock = threading.Lock()
        self._current: _Job | None = None
        self._worker: threading.Thread | None = None
        self.journal = Path(journal) if journal is not None else None
        self._db = _open(self.journal)
        self._recover_interrupted()

    @property
    def current_job_id(self) -> str | None:
        """The id of the running job, or None when idle."""
        job = self._current
        return job.job_id if job is not None else None

    def submit(self, job_id: str, params: dict[str, Any], *, refuse_new: str | None = None) -> JobSnapshot:
        """Start ``job_id`` unless it is already known; return its snapshot.

        Args:
            job_id: the client-chosen identity of the run.
            params: the driver's run parameters.
            refuse_new: if not None, a new job is refused with this message (error type ``"stopped"``);
                known jobs are still reported.

        Raises:
            Refused: ``"conflict"`` if ``job_id`` is known with other params, ``"busy"`` if another job runs,
                ``"stopped"`` if ``refuse_new`` is set.
        """
        digest = params_digest(params)
        with self._lock:
            known = self._known(job_id)
            if known is not None:
                if known[0] != digest:
                    raise Refused("conflict", f"job {job_id!r} was already submitted with different params")
                return known[1]
            if refuse_new is not None:
                raise Refused("stopped", refuse_new)
            if self._current is not None:
                raise Refused("busy", f"busy with job {self._current.job_id!r}")
            job = _Job(job_id=job_id, params_digest=digest)
            self._write_start(job)  # committed before the driver starts: a restart never runs it again
            self._current = job
            self._worker = threading.Thread(
                target=self._run, args=(job, params), name=f"job-{job_id[:40]}", daemon=True
            )
            snapshot = job.snapshot()
        logger.info("job %r started (params %s)", job_id, digest[:12])
        self._notify(job)
        self._worker.start()
        return snapshot

    def get(self, job_id: str) -> JobSnapshot:
        """The snapshot of ``job_id``; state ``"unknown"`` if the id was never seen or has been forgotten."""
        with self._lock:
            known = self._known(job_id)
        if known is not None:
            return known[1]
        return {
            "job_id": job_id,
            "state": "unknown",
            "result": None,
            "error": None,
            "progress": 0.0,
            "progress_message": "",
            "elapsed_s": None,
        }

    def abort(self, job_id: str | None = None) -> str | None:
        """Flag the running job as aborted and call ``driver.abort()``.

        Args:
            job_id: abort only if this job is the running one; None aborts whatever runs.

        Returns:
            The id of the job that was flagged, or None if nothing (matching) was running.
        """
        with self._lock:
            job = self._current
            if job is None or (job_id is not None and job.job_id != job_id):
                return None
            job.abort_requested.set()
        try:
            self._driver.abort()
        except Exception:  # the flag is set; the driver's own failure to abort must not wedge the server
            logger.exception("driver.abort() raised while aborting job %r", job.job_id)
        return job.job_id

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait up to ``timeout_s`` seconds for the worker thread; True if no job is running afterwards."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout_s)
        return self._current is None

    def close(self) -> None:
        """Close the history database (after ``join``); a job still running is recovered as interrupted."""
        with self._lock:
            self._db.close()

    # -- the worker ---------------------------------------------------------------------------------------

    def _run(self, job: _Job, params: dict[str, Any]) -> None:
        context = _Context(job, self._notify)
        result: dict[str, Any] | None = None
        error: str | None = None
        result_json: str | None = None
        try:
            result = self._driver.run(dict(params), context)
            if not isinstance(result, dict):
                raise TypeError(f"driver.run returned {type(result).__name__}, expected dict")
            result_json = json.dumps(result, allow_nan=False, separators=(",", ":"))
        except Exception as exc:  # a driver failure is reported in the job, never raised in the server
            result = None
            error = (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:_MAX_ERROR_CHARS]
            if not job.abort_requested.is_set():
                logger.warning("job %r failed: %s", job.job_id, error)
        del params
        with self._lock:
            if job.abort_requested.is_set():
                job.state, job.error = "aborted", error or "aborted on request"
                job.result = result
            elif error is not None:
                job.state, job.error = "failed", error
            else:
                job.state, job.result, job.progress = "done", result, 1.0
            job.finished_s = time.monotonic()
            self._write_end(job, result_json if job.result is not None else None)
            self._current = None
        logger.info("job %r ended %s", job.job_id, job.state)
        self._notify(job)

    def _notify(self, job: _Job) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(job.snapshot())
        except Exception:
            logger.exception("job change callback raised")

    # -- the history (called with the lock held) -----------------------------------------------------------

    def _known(self, job_id: str) -> tuple[str, JobSnapshot] | None:
        """(params digest, snapshot) of a job in the history, the running one included."""
        current = self._current
        if current is not None and current.job_id == job_id:
            return current.params_digest, current.snapshot()
        row = self._db.execute(
            "SELECT params_digest, state, result_json, error, progress, progress_message, started_at, finished_at "
            "FROM job WHERE job_id = ?",
            (job_id,),
        ).fetchone()
        if row is None:
            return None
        digest, state, result_json, error, progress, message, started_at, finished_at = row
        end = finished_at if finished_at is not None else time.time()
        return digest, {
            "job_id": job_id,
            "state": state,
            "result": json.loads(result_json) if result_json is not None else None,
            "error": error,
            "progress": progress,
            "progress_message": message,
            "elapsed_s": round(max(0.0, end - started_at), 6),
        }

    def _write_start(self, job: _Job) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO job (job_id, params_digest, state, started_at, pid) VALUES (?, ?, 'running', ?, ?)",
                (job.job_id, job.params_digest, job.started_at, os.getpid()),
            )
            self._db.execute(
                "DELETE FROM job WHERE seq <= (SELECT MAX(seq) FROM job) - ? AND state != 'running'",
                (self._history,),
            )

    def _write_end(self, job: _Job, result_json: str | None) -> None:
        assert job.finished_s is not None
        finished_at = job.started_at + (job.finished_s - job.started_s)
        try:
            with self._db:
                self._db.execute(
                    "UPDATE job SET state = ?, result_json = ?, error = ?, progress = ?, progress_message = ?, "
                    "finished_at = ? WHERE job_id = ?",
                    (job.state, result_json, job.error, job.progress, job.progress_message, finished_at, job.job_id),
                )
        except sqlite3.Error:
            logger.exception("could not record the end of job %r in %s", job.job_id, self.journal or "memory")

    def _recover_interrupted(self) -> None:
        rows = self._db.execute("SELECT job_id, pid FROM job WHERE state = 'running'").fetchall()
        if not rows:
            return
        with self._db:
            self._db.execute(
                "UPDATE job SET state = 'interrupted', error = ?, finished_at = ? WHERE state = 'running'",
                (INTERRUPTED, time.time()),
            )
        for job_id, pid in rows:
            logger.warning("job %r (started by process %d) was interrupted by a restart", job_id, pid)


def _open(path: Path | None) -> sqlite3.Connection:
    """The history database: a file with a write-ahead log, synchronous commits, or a private in-memory one."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(
            str(path) if path is not None else ":memory:", check_same_thread=False
        )
        if path is not None:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        db.execute(_SCHEMA)
    except sqlite3.Error as error:
        raise ValueError(f"job journal {path}: cannot open it as a SQLite database ({error})") from None
    return db
