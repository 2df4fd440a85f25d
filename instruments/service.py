"""The socket-free core of an instrument server: a request frame in, a reply frame out, never an exception.

``InstrumentService.handle`` decodes a request, checks the caller's allow-list and the lease, dispatches the
command through one table and encodes the reply. The ZeroMQ server (``instruments.server``) and in-memory
tests both drive it. Results per command:

=============== ======================================================================================
command         result
=============== ======================================================================================
ping            ``{"pong": true, "name", "time_s"}`` (wall clock, s since the epoch)
describe        ``driver.describe()`` plus ``{"name", "protocol_version", "commands"}``
status          ``{"name", "kind", "state": "idle"|"busy"|"stopped", "job_id", "lease"}``
run             the job snapshot (see ``instruments.jobs``); idempotent by ``job_id``
job             the job snapshot
abort           ``{"aborted_job_id": str | None}``
stop            ``{"stopped": true, "aborted_job_id": str | None}`` (needs no lease: emergency stop)
reset           ``{"state"}``
shutdown        ``{"shutting_down": true}``
acquire_lease   ``{"token", "holder", "expires_in_s"}``
release_lease   ``{"released": bool}``
=============== ======================================================================================
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instruments.drivers import Driver
from instruments.errors import ProtocolError
from instruments.jobs import JobSnapshot, JobTable, Refused
from instruments.lease import LeaseKeeper
from instruments.protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Reply,
    Request,
    decode_request,
    encode_reply,
)

__all__ = ["InstrumentService", "COMMANDS", "READ_ONLY_COMMANDS", "EventSink", "MAX_FIELD_CHARS"]

logger = logging.getLogger(__name__)

EventSink = Callable[[str, dict[str, Any]], None]
"""Receives ``(topic, data)`` for every event: topics ``"state"``, ``"job"``, ``"progress"``, ``"lease"``."""

READ_ONLY_COMMANDS = frozenset({"ping", "describe", "status", "job"})
COMMANDS = READ_ONLY_COMMANDS | frozenset(
    {"run", "abort", "stop", "reset", "shutdown", "acquire_lease", "release_lease"}
)


MAX_FIELD_CHARS = 200
"""The longest string param of any command (``job_id``, ``lease``, ``holder``, ``token``), in characters."""


@dataclass(frozen=True)
class _Param:
    types: type | tuple[type, ...]
    required: bool = True


def _params(command: str, params: dict[str, Any], spec: dict[str, _Param]) -> dict[str, Any]:
    """Check ``params`` against ``spec``: no unknown names, required ones present, types right."""
    unknown = sorted(set(params) - spec.keys())
    if unknown:
        allowed = ", ".join(map(repr, sorted(spec))) or "none"
        raise Refused("bad_params", f"{command!r} got unknown param(s) {', '.join(map(repr, unknown))}; "
                      f"allowed: {allowed}")
    for name, rule in spec.items():
        if name not in params:
            if rule.required:
                raise Refused("bad_params", f"{command!r} needs param {name!r}")
            continue
        value = params[name]
        numeric = rule.types in (float, (int, float))
        if not isinstance(value, rule.types) or (numeric and isinstance(value, bool)):
            names = rule.types.__name__ if isinstance(rule.types, type) else "/".join(
                t.__name__ for t in rule.types
            )
            got = type(value).__name__
            raise Refused("bad_params", f"{command!r} param {name!r} must be {names}, got {got}")
        if isinstance(value, str) and not value:
            raise Refused("bad_params", f"{command!r} param {name!r} must not be empty")
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            raise Refused(
                "bad_params", f"{command!r} param {name!r} has {len(value)} characters; at most {MAX_FIELD_CHARS}"
            )
    return params


_NUMBER = (int, float)
_SPECS: dict[str, dict[str, _Param]] = {
    "ping": {},
    "describe": {},
    "status": {},
    "run": {"job_id": _Param(str), "params": _Param(dict), "lease": _Param(str, required=False)},
    "job": {"job_id": _Param(str)},
    "abort": {"job_id": _Param(str, required=False), "lease": _Param(str, required=False)},
    "stop": {},
    "reset": {"lease": _Param(str, required=False)},
    "shutdown": {"lease": _Param(str, required=False)},
    "acquire_lease": {
        "holder": _Param(str),
        "duration_s": _Param(_NUMBER),
        "token": _Param(str, required=False),
    },
    "release_lease": {"token": _Param(str)},
}


class InstrumentService:
    """Hosts one driver behind the protocol's commands, without any socket.

    Args:
        driver: the instrument driver served.
        name: the instrument's name in replies and events; defaults to ``driver.describe()["name"]`` or
            ``driver.kind``.
        require_lease: if True, ``run``/``abort``/``reset``/``shutdown`` need a lease even when nobody holds
            one (when someone holds a lease those commands always need it; ``stop`` never does).
        history: how many jobs are remembered for idempotent resubmission and ``job`` queries.
        max_message_bytes: the largest request or reply frame, in bytes.
        on_event: receives every event (see ``EventSink``), from any thread; must not block.
        journal: a SQLite file keeping the job history across restarts (see ``instruments.jobs``); None keeps
            it in memory.
    """

    def __init__(
        self,
        driver: Driver,
        *,
        name: str | None = None,
        require_lease: bool = False,
        history: int = 1000,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        on_event: EventSink | None = None,
        journal: str | Path | None = None,
    ) -> None:
        self.driver = driver
        self.name = name or _driver_name(driver)
        self.max_message_bytes = max_message_bytes
        self.shutdown_requested = threading.Event()
        self._on_event = on_event
        self._stopped = False
        self._state_lock = threading.Lock()
        self._last_state = "idle"
        self._jobs = JobTable(driver, history=history, on_change=self._job_changed, journal=journal)
        self.leases = LeaseKeeper(required=require_lease)
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ping": self._ping,
            "describe": self._describe,
            "status": self._status,
            "run": self._run,
            "job": self._job,
            "abort": self._abort,
            "stop": self._stop,
            "reset": self._reset,
            "shutdown": self._shutdown,
            "acquire_lease": self._acquire_lease,
            "release_lease": self._release_lease,
        }

    @property
    def state(self) -> str:
        """``"stopped"`` (emergency stop until ``reset``), else ``"busy"`` during a job, else ``"idle"``."""
        if self._stopped:
            return "stopped"
        return "busy" if self._jobs.current_job_id is not None else "idle"

    def handle(self, data: bytes, *, allowed: frozenset[str] | None = None, client: str = "") -> bytes:
        """Answer one request frame with one reply frame; never raises.

        Args:
            data: the request frame.
            allowed: the commands this caller may send (None: all).
            client: a name for the caller in logs (its public key under CurveZMQ).
        """
        try:
            request = decode_request(data, max_bytes=self.max_message_bytes)
        except ProtocolError as exc:
            logger.info("bad request from %s: %s", client or "a client", exc)
            return self._encode(Reply.failure(exc.request_id or "", "protocol", str(exc)))
        return self._encode(self.dispatch(request, allowed=allowed, client=client))

    def dispatch(self, request: Request, *, allowed: frozenset[str] | None = None, client: str = "") -> Reply:
        """Carry out one decoded request; never raises."""
        handler = self._handlers.get(request.command)
        if handler is None:
            return Reply.failure(
                request.id,
                "unknown_command",
                f"unknown command {request.command!r}; known: {', '.join(sorted(self._handlers))}",
            )
        if allowed is not None and request.command not in allowed:
            logger.warning("refused %r from client %s: not on its allow-list", request.command, client or "?")
            return Reply.failure(
                request.id, "unauthorized", f"this client may not send {request.command!r}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        try:
            params = _params(request.command, request.params, _SPECS[request.command])
            return Reply.success(request.id, handler(params))
        except Refused as exc:
            return Reply.failure(request.id, exc.error_type, exc.message)
        except Exception as exc:  # a bug or a driver fault in a quick command must not kill the server
            logger.exception("command %r failed", request.command)
            return Reply.failure(request.id, "internal", f"{type(exc).__name__}: {exc}")

    def close(self, timeout_s: float = 2.0) -> None:
        """Abort any running job and wait up to ``timeout_s`` seconds for its worker to end."""
        self._jobs.abort()
        if self._jobs.join(timeout_s):
            self._jobs.close()

    # -- commands ---------------------------------------------------------------------------------------

    def _ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "name": self.name, "time_s": time.time()}

    def _describe(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            facts = dict(self.driver.describe())
        except Exception as exc:
            raise Refused("driver_error", f"driver.describe() raised {type(exc).__name__}: {exc}") from exc
        facts.setdefault("kind", self.driver.kind)
        facts.update(name=self.name, protocol_version=PROTOCOL_VERSION, commands=sorted(self._handlers))
        return facts

    def _status(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.driver.kind,
            "state": self.state,
            "job_id": self._jobs.current_job_id,
            "lease": self.leases.describe(),
        }

    def _run(self, params: dict[str, Any]) -> dict[str, Any]:
        job_id = params["job_id"]
        self.leases.check(params.get("lease"), "run")
        refuse = "emergency stop in force; send 'reset' first" if self._stopped else None
        return self._jobs.submit(job_id, params["params"], refuse_new=refuse)

    def _job(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._jobs.get(params["job_id"])

    def _abort(self, params: dict[str, Any]) -> dict[str, Any]:
        self.leases.check(params.get("lease"), "abort")
        return {"aborted_job_id": self._jobs.abort(params.get("job_id"))}

    def _stop(self, params: dict[str, Any]) -> dict[str, Any]:
        self._stopped = True
        aborted = self._jobs.abort()
        logger.warning("emergency stop of %s (aborted job %r)", self.name, aborted)
        self._emit_state()
        return {"stopped": True, "aborted_job_id": aborted}

    def _reset(self, params: dict[str, Any]) -> dict[str, Any]:
        self.leases.check(params.get("lease"), "reset")
        self._stopped = False
        self._emit_state()
        return {"state": self.state}

    def _shutdown(self, params: dict[str, Any]) -> dict[str, Any]:
        self.leases.check(params.get("lease"), "shutdown")
        self.shutdown_requested.set()
        return {"shutting_down": True}

    def _acquire_lease(self, params: dict[str, Any]) -> dict[str, Any]:
        lease = self.leases.acquire(params["holder"], float(params["duration_s"]), params.get("token"))
        self._emit("lease", {"holder": lease.holder, "duration_s": float(params["duration_s"])})
        return {"token": lease.token, "holder": lease.holder, "expires_in_s": float(params["duration_s"])}

    def _release_lease(self, params: dict[str, Any]) -> dict[str, Any]:
        released = self.leases.release(params["token"])
        if released:
            self._emit("lease", {"holder": None, "duration_s": 0.0})
        return {"released": released}

    # -- events -----------------------------------------------------------------------------------------

    def _job_changed(self, snapshot: JobSnapshot) -> None:
        if snapshot["state"] == "running":
            self._emit("progress", {k: v for k, v in snapshot.items() if k != "result"})
        else:
            self._emit("job", snapshot)
        self._emit_state()

    def _emit_state(self) -> None:
        with self._state_lock:
            state = self.state
            if state == self._last_state:
                return
            self._last_state = state
        self._emit("state", {"state": state, "job_id": self._jobs.current_job_id})

    def _emit(self, topic: str, data: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(topic, data)
        except Exception:
            logger.exception("event sink raised for topic %r", topic)

    def _encode(self, reply: Reply) -> bytes:
        try:
            return encode_reply(reply, max_bytes=self.max_message_bytes)
        except ProtocolError as exc:
            return encode_reply(Reply.failure(reply.id, "internal", f"could not encode the reply: {exc}"))


def _driver_name(driver: Driver) -> str:
    try:
        name = driver.describe().get("name")
    except Exception:
        name = None
    return name if isinstance(name, str) and name else str(getattr(driver, "kind", "instrument"))
