"""The job table of one instrument: one driver run at a time on a worker thread, plus a bounded history.

Jobs are identified by a client-chosen ``job_id``. Submitting a known id never runs the driver again; it
returns the job's current snapshot. A snapshot is the dict the ``job`` command returns::

    {"job_id": str, "state": "running" | "done" | "failed" | "aborted" | "unknown",
     "result": dict | None, "error": str | None, "progress": float, "progress_message": str,
     "elapsed_s": float | None}
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from instruments.drivers import Driver

__all__ = ["JobTable", "JobSnapshot", "Refused", "JOB_STATES"]

logger = logging.getLogger(__name__)

JOB_STATES = ("running", "done", "failed", "aborted", "unknown")
JobSnapshot = dict[str, Any]


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
        self._job.progress_message = str(message)
        self._on_progress(self._job)


@dataclass
class _Job:
    job_id: str
    params: dict[str, Any]
    params_key: str
    state: str = "running"
    result: dict[str, Any] | None = None
    error: str | None = None
    progress: float = 0.0
    progress_message: str = ""
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


class JobTable:
    """Runs one driver job at a time on a worker thread and remembers the last ``history`` jobs.

    Args:
        driver: the driver whose ``run`` is called.
        history: how many jobs are remembered for idempotent resubmission and ``job`` queries.
        on_change: called (from any thread) with a snapshot whenever a job starts, reports progress or ends.
    """

    def __init__(
        self,
        driver: Driver,
        *,
        history: int = 1000,
        on_change: Callable[[JobSnapshot], None] | None = None,
    ) -> None:
        if history < 1:
            raise ValueError(f"history must be at least 1, got {history}")
        self._driver = driver
        self._history = history
        self._on_change = on_change
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._current: _Job | None = None
        self._worker: threading.Thread | None = None

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
        params_key = json.dumps(params, sort_keys=True, separators=(",", ":"))
        with self._lock:
            known = self._jobs.get(job_id)
            if known is not None:
                if known.params_key != params_key:
                    raise Refused("conflict", f"job {job_id!r} was already submitted with different params")
                return known.snapshot()
            if refuse_new is not None:
                raise Refused("stopped", refuse_new)
            if self._current is not None:
                raise Refused("busy", f"busy with job {self._current.job_id!r}")
            job = _Job(job_id=job_id, params=params, params_key=params_key)
            self._jobs[job_id] = job
            while len(self._jobs) > self._history:
                oldest_id, oldest = next(iter(self._jobs.items()))
                if oldest is self._current:
                    break
                del self._jobs[oldest_id]
            self._current = job
            self._worker = threading.Thread(target=self._run, args=(job,), name=f"job-{job_id}", daemon=True)
            snapshot = job.snapshot()
        self._notify(job)
        self._worker.start()
        return snapshot

    def get(self, job_id: str) -> JobSnapshot:
        """The snapshot of ``job_id``; state ``"unknown"`` if the id was never seen or has been forgotten."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                return job.snapshot()
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

    def _run(self, job: _Job) -> None:
        context = _Context(job, self._notify)
        result: dict[str, Any] | None = None
        error: str | None = None
        try:
            result = self._driver.run(dict(job.params), context)
            if not isinstance(result, dict):
                raise TypeError(f"driver.run returned {type(result).__name__}, expected dict")
            json.dumps(result, allow_nan=False)
        except Exception as exc:  # a driver failure is reported in the job, never raised in the server
            result = None
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if not job.abort_requested.is_set():
                logger.warning("job %r failed: %s", job.job_id, error)
        with self._lock:
            if job.abort_requested.is_set():
                job.state, job.error = "aborted", error or "aborted on request"
                job.result = result
            elif error is not None:
                job.state, job.error = "failed", error
            else:
                job.state, job.result, job.progress = "done", result, 1.0
            job.finished_s = time.monotonic()
            self._current = None
        self._notify(job)

    def _notify(self, job: _Job) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(job.snapshot())
        except Exception:
            logger.exception("job change callback raised")
