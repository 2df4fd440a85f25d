"""Subscribe to an instrument server's event stream (state changes, job ends, progress, lease changes).

Example::

    with EventSubscriber(server.events_address, topics=("job",)) as events:
        event = events.next(timeout_s=10.0)   # {"v", "seq", "time_s", "instrument", "topic", "data"} or None

PUB/SUB drops events for slow or late subscribers; use events to react quickly, and ``job``/``status`` queries
as the source of truth.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import zmq

from instruments.errors import ProtocolError
from instruments.security import ClientSecurity, check_plain_allowed

__all__ = ["EventSubscriber"]


class EventSubscriber:
    """A SUB socket on one server's events endpoint.

    Args:
        address: the server's ``events_address``.
        topics: the topics to receive (``"state"``, ``"job"``, ``"progress"``, ``"lease"``); empty: all.
        security: CurveZMQ keys (required off loopback unless ``allow_insecure``).
        allow_insecure: subscribe unencrypted off loopback.
        context: the ZeroMQ context (default: the process-wide one).
    """

    def __init__(
        self,
        address: str,
        *,
        topics: Iterable[str] = (),
        security: ClientSecurity | None = None,
        allow_insecure: bool = False,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        if security is None:
            check_plain_allowed(address, allow_insecure, "events")
        self.address = address
        ctx = context if context is not None else zmq.Context.instance()
        self._socket: zmq.Socket[bytes] = ctx.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        if security is not None:
            self._socket.curve_secretkey = security.secret_key
            self._socket.curve_publickey = security.public_key
            self._socket.curve_serverkey = security.server_public_key
        wanted = list(topics) or [""]
        for topic in wanted:
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._socket.connect(address)

    def next(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        """The next event, or None if none arrives within ``timeout_s`` seconds (None: wait forever).

        Raises:
            ProtocolError: the event is not a ``[topic, json]`` pair.
        """
        timeout_ms = None if timeout_s is None else max(0, int(timeout_s * 1000))
        if not self._socket.poll(timeout_ms, zmq.POLLIN):
            return None
        frames = self._socket.recv_multipart()
        if len(frames) != 2:
            raise ProtocolError(f"an event must have 2 frames (topic, body), got {len(frames)}")
        try:
            event = json.loads(frames[1])
        except ValueError as exc:
            raise ProtocolError(f"event body is not valid JSON: {exc}") from exc
        if not isinstance(event, dict):
            raise ProtocolError("event body must be a JSON object")
        return event

    def wait_for(self, predicate: Callable[[dict[str, Any]], Any], timeout_s: float) -> dict[str, Any] | None:
        """The first event for which ``predicate(event)`` is true within ``timeout_s`` seconds, else None."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            event = self.next(remaining)
            if event is not None and predicate(event):
                return event
        return None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            event = self.next()
            if event is not None:
                yield event

    def close(self) -> None:
        """Close the socket."""
        self._socket.close(0)

    def __enter__(self) -> EventSubscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
