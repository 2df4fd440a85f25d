"""The envelope: round trips, and every broken message rejected with a message that names the problem."""

from __future__ import annotations

import json

import pytest

from instruments import (
    PROTOCOL_VERSION,
    ProtocolError,
    Reply,
    Request,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from instruments.errors import InstrumentError


def _raw(**fields: object) -> bytes:
    body = {"v": 1, "id": "r-1", "command": "ping", "params": {}}
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not _DROP}).encode()


_DROP = object()


def test_request_round_trip_keeps_everything() -> None:
    request = Request("run", {"job_id": "j-1", "params": {"x": [1.5, 2.0e-300], "s": "Å"}})
    decoded = decode_request(encode_request(request))
    assert decoded == request
    assert json.loads(encode_request(request))["v"] == PROTOCOL_VERSION == 1


def test_reply_round_trip_success_and_failure() -> None:
    ok = Reply.success("r-1", {"value": 0.1 + 0.2})
    assert decode_reply(encode_reply(ok)) == ok
    bad = Reply.failure("r-2", "busy", "busy with job 'a'")
    decoded = decode_reply(encode_reply(bad))
    assert not decoded.ok and decoded.error_type == "busy" and decoded.error_message == "busy with job 'a'"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\xff\xfe", "not valid UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got array"),
        (_raw(extra=1), "unexpected key(s) 'extra'"),
        (_raw(params=_DROP), "missing key(s) 'params'"),
        (_raw(v=2), "unsupported protocol version 2"),
        (_raw(v="1"), "'v' must be an integer"),
        (_raw(v=True), "'v' must be an integer"),
        (_raw(command=3), "command must be a string, got number"),
        (_raw(command=""), "command must have 1 to"),
        (_raw(params=[]), "'params' must be an object, got array"),
        (_raw(id=None), "request 'id' must be a string, got null"),
        (b'{"v": 1, "id": "a", "command": "ping", "params": {"x": NaN}}', "NaN is not valid JSON"),
    ],
)
def test_decode_request_names_the_problem(data: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=None) as info:
        decode_request(data)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, InstrumentError)


def test_request_id_is_salvaged_for_the_error_reply() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_request(_raw(id="abc", extra=1))
    assert info.value.request_id == "abc"


def test_size_limit_applies_both_ways() -> None:
    request = Request("run", {"blob": "x" * 2000})
    with pytest.raises(ProtocolError, match="exceeds the limit of 1000 bytes"):
        encode_request(request, max_bytes=1000)
    with pytest.raises(ProtocolError, match="exceeds the limit of 1000 bytes"):
        decode_request(encode_request(request), max_bytes=1000)


def test_non_finite_and_unserialisable_values_are_refused_on_encode() -> None:
    with pytest.raises(ProtocolError, match="not JSON-serialisable"):
        encode_request(Request("run", {"x": float("nan")}))
    with pytest.raises(ProtocolError, match="not JSON-serialisable"):
        encode_reply(Reply.success("r", {"x": object()}))


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"v": 1, "id": "r", "ok": "yes", "result": {}}, "'ok' must be a boolean"),
        ({"v": 1, "id": "r", "ok": True, "result": {}, "error": {}}, "unexpected key(s) 'error'"),
        ({"v": 1, "id": "r", "ok": False, "error": {"type": "x"}}, "missing key(s) 'message'"),
        ({"v": 1, "id": "r", "ok": True, "result": []}, "'result' must be an object"),
        ({"v": 1, "id": 5, "ok": True, "result": {}}, "reply 'id' must be a string"),
    ],
)
def test_decode_reply_names_the_problem(body: dict[str, object], fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_reply(json.dumps(body).encode())
    assert fragment in str(info.value)


def test_reply_cannot_carry_result_and_error() -> None:
    with pytest.raises(ProtocolError, match="not both"):
        Reply(id="r", result={}, error_type="busy", error_message="x")
