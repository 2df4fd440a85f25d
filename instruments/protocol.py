"""The versioned message schema of the lab's wire: strict encoding and decoding of requests and replies.

Every message is one ZeroMQ frame of UTF-8 JSON (no NaN or Infinity), at most ``max_bytes`` long
(``DEFAULT_MAX_MESSAGE_BYTES`` = 64 MiB unless configured). Protocol version ``PROTOCOL_VERSION`` = 1.

Request (client to server)::

    {"v": 1, "id": "<uuid4>", "command": "run", "params": {...}}

Reply (server to client), carrying the request's ``id``::

    {"v": 1, "id": "<same>", "ok": true,  "result": {...}}
    {"v": 1, "id": "<same>", "ok": false, "error": {"type": "busy", "message": "busy with job 'x'"}}

Keys are exact: a missing or extra key, a wrong type or another version is a ``ProtocolError`` whose message
names the problem. A server answers an undecodable request with an error reply of type ``"protocol"`` whose
``id`` is the request's when it could be read, else ``""``.

Commands and their params (see ``instruments.server`` for results): ``ping {}``, ``describe {}``,
``status {}``, ``run {"job_id", "params", "lease"?}``, ``job {"job_id"}``, ``abort {"job_id"?, "lease"?}``,
``stop {}``, ``reset {"lease"?}``, ``shutdown {"lease"?}``, ``acquire_lease {"holder", "duration_s",
"token"?}``, ``release_lease {"token"}``.

Limits: ``id`` at most ``MAX_ID_CHARS`` = 128 characters, ``command`` ``MAX_COMMAND_CHARS`` = 64, every string
param (``job_id``, ``lease``, ``holder``, ``token``) ``instruments.service.MAX_FIELD_CHARS`` = 200; a longer one is a
``bad_params`` (or ``protocol``) error reply.

Error types: ``protocol``, ``unknown_command``, ``bad_params``, ``busy``, ``stopped``, ``conflict``,
``lease``, ``unauthorized``, ``driver_error``, ``internal``.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any, NoReturn

from instruments.errors import ProtocolError

__all__ = [
    "PROTOCOL_VERSION",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ERROR_TYPES",
    "Request",
    "Reply",
    "encode_request",
    "decode_request",
    "encode_reply",
    "decode_reply",
    "new_request_id",
]

PROTOCOL_VERSION = 1
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_ID_CHARS = 128
MAX_COMMAND_CHARS = 64

ERROR_TYPES = frozenset(
    {
        "protocol",
        "unknown_command",
        "bad_params",
        "busy",
        "stopped",
        "conflict",
        "lease",
        "unauthorized",
        "driver_error",
        "internal",
    }
)

_REQUEST_KEYS = frozenset({"v", "id", "command", "params"})
_OK_REPLY_KEYS = frozenset({"v", "id", "ok", "result"})
_ERROR_REPLY_KEYS = frozenset({"v", "id", "ok", "error"})
_ERROR_KEYS = frozenset({"type", "message"})


def new_request_id() -> str:
    """A fresh random request id (a UUID4 in canonical text form)."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Request:
    """One command to an instrument server.

    Attributes:
        command: the command name, e.g. ``"run"``.
        params: the command's parameters (a JSON object).
        id: the request id the reply will carry; a fresh UUID4 unless given.
    """

    command: str
    params: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_request_id)

    def __post_init__(self) -> None:
        _check_id(self.id, "request")
        _check_str(self.command, "command", MAX_COMMAND_CHARS, self.id)
        if not isinstance(self.params, dict):
            _fail(f"request 'params' must be an object, got {_type_name(self.params)}", self.id)


@dataclass(frozen=True)
class Reply:
    """The server's answer to one request: a result or an error, never both.

    Attributes:
        id: the id of the request answered (``""`` when the request's id could not be read).
        result: the result object when the request succeeded, else None.
        error_type: one of ``ERROR_TYPES`` when the request failed, else None.
        error_message: a human-readable explanation when the request failed, else None.
    """

    id: str
    result: dict[str, Any] | None = None
    error_type: str | None = None
    error_message: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or len(self.id) > MAX_ID_CHARS:
            _fail(f"reply 'id' must be a string of at most {MAX_ID_CHARS} characters")
        if self.result is not None:
            if self.error_type is not None or self.error_message is not None:
                _fail("a reply carries a result or an error, not both", self.id)
            if not isinstance(self.result, dict):
                _fail(f"reply 'result' must be an object, got {_type_name(self.result)}", self.id)
        else:
            if not isinstance(self.error_type, str) or not self.error_type:
                _fail("an error reply needs a non-empty string 'type'", self.id)
            if not isinstance(self.error_message, str):
                _fail(f"error 'message' must be a string, got {_type_name(self.error_message)}", self.id)

    @property
    def ok(self) -> bool:
        """True when the request succeeded."""
        return self.result is not None

    @classmethod
    def success(cls, request_id: str, result: dict[str, Any]) -> Reply:
        """A successful reply to ``request_id``."""
        return cls(id=request_id, result=result)

    @classmethod
    def failure(cls, request_id: str, error_type: str, message: str) -> Reply:
        """An error reply to ``request_id``."""
        return cls(id=request_id, error_type=error_type, error_message=message)


def encode_request(request: Request, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
    """Serialise a request to one frame.

    Raises:
        ProtocolError: the params are not JSON-serialisable (or hold NaN/Infinity), or the frame is too big.
    """
    body = {"v": PROTOCOL_VERSION, "id": request.id, "command": request.command, "params": request.params}
    return _dump(body, max_bytes, request.id)


def decode_request(data: bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Request:
    """Parse and validate one request frame.

    Raises:
        ProtocolError: naming what is wrong; ``request_id`` is set when the id could be read.
    """
    obj = _load(data, max_bytes, "request")
    request_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    if request_id is not None and len(request_id) > MAX_ID_CHARS:
        request_id = None
    _check_keys(obj, _REQUEST_KEYS, "request", request_id)
    _check_version(obj["v"], request_id)
    return Request(command=obj["command"], params=obj["params"], id=_check_id(obj["id"], "request"))


def encode_reply(reply: Reply, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
    """Serialise a reply to one frame.

    Raises:
        ProtocolError: the result is not JSON-serialisable (or holds NaN/Infinity), or the frame is too big.
    """
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": reply.id, "ok": reply.ok}
    if reply.ok:
        body["result"] = reply.result
    else:
        body["error"] = {"type": reply.error_type, "message": reply.error_message}
    return _dump(body, max_bytes, reply.id)


def decode_reply(data: bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Reply:
    """Parse and validate one reply frame.

    Raises:
        ProtocolError: naming what is wrong.
    """
    obj = _load(data, max_bytes, "reply")
    ok = obj.get("ok")
    if not isinstance(ok, bool):
        _fail(f"reply 'ok' must be a boolean, got {_type_name(ok)}")
    _check_keys(obj, _OK_REPLY_KEYS if ok else _ERROR_REPLY_KEYS, "reply", None)
    _check_version(obj["v"], None)
    if not isinstance(obj["id"], str):
        _fail(f"reply 'id' must be a string, got {_type_name(obj['id'])}")
    if ok:
        return Reply(id=obj["id"], result=obj["result"])
    error = obj["error"]
    if not isinstance(error, dict):
        _fail(f"reply 'error' must be an object, got {_type_name(error)}")
    _check_keys(error, _ERROR_KEYS, "reply 'error'", None)
    return Reply(id=obj["id"], error_type=error["type"], error_message=error["message"])


def _dump(body: dict[str, Any], max_bytes: int, request_id: str) -> bytes:
    try:
        data = json.dumps(body, allow_nan=False, separators=(",", ":")).encode("ascii")
    except (TypeError, ValueError) as exc:
        _fail(f"message is not JSON-serialisable: {exc}", request_id)
    if len(data) > max_bytes:
        _fail(f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes", request_id)
    return data


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range for a 64-bit float")
    return value


def _load(data: bytes, max_bytes: int, what: str) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        _fail(f"{what} must be bytes, got {_type_name(data)}")
    if len(data) > max_bytes:
        _fail(f"{what} of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"{what} is not valid UTF-8: {exc}")
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        _fail(f"{what} is not valid JSON: {exc}")
    if not isinstance(obj, dict):
        _fail(f"{what} must be a JSON object, got {_type_name(obj)}")
    return obj


def _check_keys(obj: dict[str, Any], allowed: frozenset[str], what: str, request_id: str | None) -> None:
    missing = sorted(allowed - obj.keys())
    extra = sorted(set(obj) - allowed)
    if missing:
        _fail(f"{what} is missing key(s) {', '.join(map(repr, missing))}", request_id)
    if extra:
        _fail(
            f"{what} has unexpected key(s) {', '.join(map(repr, extra))}; "
            f"allowed: {', '.join(map(repr, sorted(allowed)))}",
            request_id,
        )


def _check_version(version: Any, request_id: str | None) -> None:
    if not isinstance(version, int) or isinstance(version, bool):
        _fail(f"'v' must be an integer protocol version, got {_type_name(version)}", request_id)
    if version != PROTOCOL_VERSION:
        _fail(f"unsupported protocol version {version}; this side speaks {PROTOCOL_VERSION}", request_id)


def _check_id(value: Any, what: str) -> str:
    return _check_str(value, f"{what} 'id'", MAX_ID_CHARS, None)


def _check_str(value: Any, name: str, max_chars: int, request_id: str | None) -> str:
    if not isinstance(value, str):
        _fail(f"{name} must be a string, got {_type_name(value)}", request_id)
    if not value or len(value) > max_chars:
        _fail(f"{name} must have 1 to {max_chars} characters, got {len(value)}", request_id)
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        finite = not isinstance(value, float) or math.isfinite(value)
        return "number" if finite else "non-finite number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), type(value).__name__)


def _fail(message: str, request_id: str | None = None) -> NoReturn:
    raise ProtocolError(message, request_id=request_id)
