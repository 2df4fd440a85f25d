"""The instrument client: a typed call per protocol command, with timeouts, retries, leases and heartbeats.

Example::

    with InstrumentClient.connect("tcp://127.0.0.1:43127", timeout_s=2.0) as xrd:
        result = xrd.run({"two_theta_start_deg": 10.0}, job_id="exp-0042-xrd", timeout_s=600.0)
        pattern = Diffractogram.from_dict(result["reading"])

Only idempotent commands are retried after a timeout (``ping``, ``describe``, ``status``, ``job``, ``stop``
and ``submit``, which the server deduplicates by ``job_id``); the others raise at the first timeout.
A client is safe to share between threads (calls are serialised).
"""

from __future__ import annotations

import logging
import os
import socket as _socket
import threading
import time
from typing import Any

import zmq

from instruments.channel import Channel
from instruments.errors import (
    InstrumentTimeout,
    InstrumentUnreachable,
    JobAborted,
    JobFailed,
    JobInterrupted,
    remote_error,
)
from instruments.protocol import DEFAULT_MAX_MESSAGE_BYTES, Request
from instruments.security import ClientSecurity, check_plain_allowed

__all__ = ["InstrumentClient"]

logger = logging.getLogger(__name__)


class InstrumentClient:
    """Talks to one instrument server over a DEALER socket.

    Args:
        address: the server's endpoint, e.g. ``tcp://127.0.0.1:43127``.
        timeout_s: how long one request waits for its reply, in seconds.
        retries: how many times an idempotent request is retried after a timeout.
        backoff_s: the pause before the first retry, in seconds; doubled before each further one.
        poll_interval_s: the longest pause between two ``job`` polls in ``wait``, in seconds.
        heartbeat_s: if given, a background thread pings the server every ``heartbeat_s`` seconds (on its own
            socket) and renews a held lease; after ``heartbeat_misses`` missed pings the server counts as dead
            and calls raise ``InstrumentUnreachable`` at once until a ping succeeds again.
        heartbeat_misses: consecutive missed pings that mean "dead".
        security: CurveZMQ keys; required for non-loopback addresses unless ``allow_insecure``.
        allow_insecure: talk unencrypted to a non-loopback address.
        holder: the name shown to others while this client holds a lease (default ``user@host:pid``).
        max_message_bytes: the largest reply accepted, in bytes.
        context: the ZeroMQ context (default: the process-wide one).
    """

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.05,
        poll_interval_s: float = 0.2,
        heartbeat_s: float | None = None,
        heartbeat_misses: int = 3,
        security: ClientSecurity | None = None,
        allow_insecure: bool = False,
        holder: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if security is None:
            check_plain_allowed(address, allow_insecure, "instrument")
        self.address = address
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.poll_interval_s = poll_interval_s
        self.holder = holder or f"{os.environ.get('USER', 'user')}@{_socket.gethostname()}:{os.getpid()}"
        self._context = context if context is not None else zmq.Context.instance()
        self._channel_args: dict[str, Any] = {"security": security, "max_message_bytes": max_message_bytes}
        self._channel = Channel(address, self._context, **self._channel_args)
        self._lock = threading.RLock()
        self._lease_token: str | None = None
        self._lease_duration_s = 0.0
        self._lease_renew_at = 0.0
        self._alive = True
        self._closed = threading.Event()
        self._heartbeat: threading.Thread | None = None
        if heartbeat_s is not None:
            if heartbeat_s <= 0 or heartbeat_misses < 1:
                raise ValueError("heartbeat_s must be positive and heartbeat_misses at least 1")
            self._heartbeat = threading.Thread(
                target=self._beat,
                args=(heartbeat_s, heartbeat_misses),
                name=f"heartbeat-{address}",
                daemon=True,
            )
            self._heartbeat.start()

    @classmethod
    def connect(cls, address: str, timeout_s: float = 5.0, **kwargs: Any) -> InstrumentClient:
        """A client whose server has answered a ping within ``timeout_s`` seconds.

        Raises:
            InstrumentUnreachable: nobody answered in time.
        """
        client = cls(address, timeout_s=timeout_s, **kwargs)
        try:
            client.check_connection(timeout_s)
        except BaseException:
            client.close()
            raise
        return client

    def check_connection(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Ping once; return the pong.

        Raises:
            InstrumentUnreachable: no answer within ``timeout_s`` seconds (default: the client's timeout).
        """
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            return self._call("ping", {}, retries=0, timeout_s=timeout)
        except InstrumentTimeout as exc:
            message = f"no instrument answers at {self.address} within {timeout} s"
            raise InstrumentUnreachable(message) from exc

    # -- reading ----------------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """False once the heartbeat has missed ``heartbeat_misses`` pings in a row (always True without)."""
        return self._alive

    def ping(self) -> dict[str, Any]:
        """``{"pong": true, "name", "time_s"}``."""
        return self._call("ping", {})

    def describe(self) -> dict[str, Any]:
        """The driver's static facts plus ``name``, ``protocol_version`` and ``commands``."""
        return self._call("describe", {})

    def status(self) -> dict[str, Any]:
        """``{"name", "kind", "state": "idle"|"busy"|"stopped", "job_id", "lease"}``."""
        return self._call("status", {})

    def job(self, job_id: str) -> dict[str, Any]:
        """The snapshot of a job: ``{"job_id", "state", "result", "error", "progress", ...}``."""
        return self._call("job", {"job_id": job_id})

    # -- running ----------------------------------------------------------------------------------------

    def submit(self, params: dict[str, Any], job_id: str) -> dict[str, Any]:
        """Start a run (or get the state of the run already known under ``job_id``); returns its snapshot.

        Raises:
            InstrumentBusy: another job is running.
            InstrumentStopped: the instrument is emergency-stopped.
            RemoteError: ``conflict`` if ``job_id`` was used with other params, or another refusal.
        """
        return self._call("run", self._with_lease({"job_id": job_id, "params": params}))

    def wait(self, job_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Poll until the job ends; return the driver's result.

        Args:
            job_id: the job to wait for.
            timeout_s: the longest wait in seconds (None: no limit).

        Raises:
            JobFailed: the driver raised, or the server does not know the job.
            JobInterrupted: the server restarted while the job ran (a ``JobFailed``).
            JobAborted: the job was aborted or emergency-stopped.
            InstrumentTimeout: the job did not end within ``timeout_s``, or the server stopped answering.
            InstrumentUnreachable: the heartbeat counts the server as dead.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pause = min(0.005, self.poll_interval_s)
        while True:
            snapshot = self.job(job_id)
            state = snapshot["state"]
            if state == "done":
                return dict(snapshot["result"] or {})
            if state == "failed":
                raise JobFailed(job_id, snapshot.get("error") or "no reason given")
            if state == "interrupted":
                raise JobInterrupted(job_id, snapshot.get("error") or "interrupted by a restart")
            if state == "aborted":
                raise JobAborted(job_id, snapshot.get("error") or "aborted")
            if state == "unknown":
                reason = f"{self.address} does not know this job (never submitted, or restarted)"
                raise JobFailed(job_id, reason)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise InstrumentTimeout(
                    f"job {job_id!r} still {state} after {timeout_s:g} s "
                    f"(progress {float(snapshot.get('progress', 0.0)):.0%})"
                )
            time.sleep(pause if deadline is None else min(pause, max(0.0, deadline - now)))
            pause = min(pause * 1.5, self.poll_interval_s)

    def run(self, params: dict[str, Any], job_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Submit and wait: the driver's result for ``job_id`` (see ``submit`` and ``wait`` for errors)."""
        self.submit(params, job_id)
        return self.wait(job_id, timeout_s)

    def abort(self, job_id: str | None = None) -> dict[str, Any]:
        """Abort the running job (only if it is ``job_id``, when given); ``{"aborted_job_id"}``."""
        params: dict[str, Any] = {} if job_id is None else {"job_id": job_id}
        return self._call("abort", self._with_lease(params), retries=self.retries if job_id else 0)

    def stop(self) -> dict[str, Any]:
        """Emergency stop: abort any job and refuse runs until ``reset``; needs no lease."""
        return self._call("stop", {})

    def reset(self) -> dict[str, Any]:
        """Clear an emergency stop; ``{"state"}``."""
        return self._call("reset", self._with_lease({}), retries=0)

    def shutdown(self) -> dict[str, Any]:
        """Ask the server to stop serving (a running job is aborted)."""
        return self._call("shutdown", self._with_lease({}), retries=0)

    # -- leasing ----------------------------------------------------------------------------------------

    @property
    def lease_token(self) -> str | None:
        """The token of the lease this client holds (as far as it knows), or None."""
        return self._lease_token

    def acquire_lease(self, duration_s: float = 60.0, token: str | None = None) -> dict[str, Any]:
        """Take (or renew) the lease for ``duration_s`` seconds; ``{"token", "holder", "expires_in_s"}``.

        With a heartbeat the lease is renewed in the background while this client lives. ``token`` renews a lease
        taken earlier by another client of the same holder (a campaign resumed after a crash, which kept it).

        Raises:
            LeaseError: another client holds the lease.
        """
        params: dict[str, Any] = {"holder": self.holder, "duration_s": float(duration_s)}
        token = token or self._lease_token
        if token is not None:
            params["token"] = token
        result = self._call("acquire_lease", params, retries=0)
        self._lease_token = result["token"]
        self._lease_duration_s = float(duration_s)
        self._lease_renew_at = time.monotonic() + duration_s / 2
        return result

    def use_lease(self, token: str | None) -> None:
        """Send ``token`` with controlling commands: a lease another client holds and renews (the coordinator of a
        distributed campaign, whose workers run its jobs). This client neither renews nor releases it."""
        self._lease_token = token
        self._lease_duration_s = 0.0

    def release_lease(self) -> bool:
        """Give the lease back; True if a live lease was released."""
        token, self._lease_token = self._lease_token, None
        if token is None:
            return False
        return bool(self._call("release_lease", {"token": token}, retries=0)["released"])

    # -- lifetime ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the heartbeat and close the socket (a held lease simply expires)."""
        self._closed.set()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join(5.0)
        with self._lock:
            self._channel.close()

    def __enter__(self) -> InstrumentClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InstrumentClient({self.address!r}, timeout_s={self.timeout_s})"

    # -- internals --------------------------------------------------------------------------------------

    def _with_lease(self, params: dict[str, Any]) -> dict[str, Any]:
        if self._lease_token is not None:
            params["lease"] = self._lease_token
        return params

    def _call(
        self,
        command: str,
        params: dict[str, Any],
        *,
        retries: int | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        if self._closed.is_set():
            raise RuntimeError("this client is closed")
        attempts = 1 + (self.retries if retries is None else retries)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        last: InstrumentTimeout | None = None
        for attempt in range(attempts):
            if not self._alive:
                raise InstrumentUnreachable(f"heartbeat lost: {self.address} stopped answering pings")
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                with self._lock:
                    reply = self._channel.exchange(Request(command, params), timeout)
            except InstrumentTimeout as exc:
                last = exc
                logger.info("%s (attempt %d of %d)", exc, attempt + 1, attempts)
                continue
            if reply.result is not None:
                return reply.result
            raise remote_error(reply.error_type or "internal", reply.error_message or "")
        assert last is not None
        raise last

    def _beat(self, interval_s: float, misses_allowed: int) -> None:
        channel = Channel(self.address, self._context, **self._channel_args)
        misses = 0
        try:
            while not self._closed.wait(interval_s):
                try:
                    channel.exchange(Request("ping", {}), interval_s)
                    misses = 0
                    if not self._alive:
                        logger.warning("%s answers again", self.address)
                    self._alive = True
                    self._renew_lease(channel, interval_s)
                except InstrumentTimeout:
                    misses += 1
                    if misses >= misses_allowed and self._alive:
                        logger.warning("%s missed %d heartbeats: counting it as dead", self.address, misses)
                        self._alive = False
                except Exception:
                    logger.exception("heartbeat to %s failed", self.address)
        finally:
            channel.close()

    def _renew_lease(self, channel: Channel, timeout_s: float) -> None:
        token = self._lease_token
        if token is None or self._lease_duration_s <= 0 or time.monotonic() < self._lease_renew_at:
            return  # no lease, or one another client renews (use_lease)
        params = {"holder": self.holder, "duration_s": self._lease_duration_s, "token": token}
        reply = channel.exchange(Request("acquire_lease", params), timeout_s)
        if reply.ok:
            self._lease_renew_at = time.monotonic() + self._lease_duration_s / 2
            if reply.result and reply.result.get("token"):
                self._lease_token = reply.result["token"]  # the server's word on the token this client holds
        else:
            logger.warning("could not renew the lease on %s: %s", self.address, reply.error_message)
