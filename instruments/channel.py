"""One DEALER socket that sends a request and waits for the reply with the same id, reopening after a timeout.

After a timeout the socket is closed and a fresh one connected, so a late reply can never be taken for the
answer to the next request; replies with a foreign id are dropped as well. Under CurveZMQ a socket monitor
tells a refused key (or a wrong server key) apart from silence. A channel is used by one thread.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from instruments.errors import InstrumentTimeout, ProtocolError, Unauthorized
from instruments.protocol import DEFAULT_MAX_MESSAGE_BYTES, Reply, Request, decode_reply, encode_request
from instruments.security import ClientSecurity

__all__ = ["Channel"]

logger = logging.getLogger(__name__)

_HANDSHAKE_FAILURES = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


class Channel:
    """A request/reply channel to one instrument server.

    Args:
        address: the server's endpoint, e.g. ``tcp://127.0.0.1:43127``.
        context: the ZeroMQ context to make sockets in.
        security: CurveZMQ keys, or None for a plain socket.
        max_message_bytes: the largest reply accepted, in bytes.
    """

    def __init__(
        self,
        address: str,
        context: zmq.Context[Any],
        *,
        security: ClientSecurity | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.address = address
        self._context = context
        self._security = security
        self._max_bytes = max_message_bytes
        self._socket: zmq.Socket[bytes] | None = None
        self._monitor: zmq.Socket[bytes] | None = None

    def exchange(self, request: Request, timeout_s: float) -> Reply:
        """Send ``request`` and return its reply.

        Args:
            request: the request to send.
            timeout_s: how long to wait for the reply, in seconds.

        Raises:
            InstrumentTimeout: no reply with the request's id within ``timeout_s`` (the socket is then
                reopened).
            Unauthorized: the CurveZMQ handshake failed (key refused by the server, or wrong server key).
            ProtocolError: the request could not be encoded, or the reply is garbled.
        """
        data = encode_request(request, max_bytes=self._max_bytes)
        socket = self._socket if self._socket is not None else self._open()
        deadline = time.monotonic() + timeout_s
        try:
            socket.send(data, zmq.NOBLOCK)
        except zmq.Again:
            self.reset()
            raise InstrumentTimeout(
                f"could not send {request.command!r} to {self.address}: send queue full"
            ) from None
        while True:
            remaining_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or not socket.poll(remaining_ms, zmq.POLLIN):
                failure = self._handshake_failure()
                self.reset()
                if failure is not None:
                    raise Unauthorized("unauthorized", f"{self.address}: {failure}")
                raise InstrumentTimeout(
                    f"no reply from {self.address} to {request.command!r} within {timeout_s:g} s"
                )
            frames = socket.recv_multipart()
            if len(frames) != 1:
                logger.warning("dropping a reply of %d frames from %s", len(frames), self.address)
                continue
            try:
                reply = decode_reply(frames[0], max_bytes=self._max_bytes)
            except ProtocolError:
                self.reset()
                raise
            if reply.id == request.id:
                return reply
            logger.debug("dropping a stale reply %s from %s", reply.id, self.address)

    def reset(self) -> None:
        """Close the socket; the next exchange connects a fresh one."""
        if self._monitor is not None and self._socket is not None:
            self._socket.disable_monitor()
            self._monitor.close(0)
            self._monitor = None
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None

    close = reset

    def _open(self) -> zmq.Socket[bytes]:
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, self._max_bytes + (1 << 20))
        if self._security is not None:
            socket.curve_secretkey = self._security.secret_key
            socket.curve_publickey = self._security.public_key
            socket.curve_serverkey = self._security.server_public_key
            self._monitor = socket.get_monitor_socket(_HANDSHAKE_FAILURES)
        socket.connect(self.address)
        self._socket = socket
        return socket

    def _handshake_failure(self) -> str | None:
        """Why the CurveZMQ handshake failed, if the monitor saw it fail; else None."""
        monitor = self._monitor
        while monitor is not None and monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                return "the server refused this client's CurveZMQ key (not on its list of clients)"
            if event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                return "CurveZMQ handshake failed (wrong server public key, or the server is not using CurveZMQ)"
        return None
