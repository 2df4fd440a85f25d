"""The ZeroMQ instrument server: one driver on a ROUTER socket, shared by many DEALER (or REQ) clients.

One thread owns the sockets and answers every frame at once (a run starts a worker thread and replies with the
job's state), so a slow driver, a garbled frame or an unreadable client never wedges the server. See
``instruments.service`` for the commands and ``instruments.protocol`` for the envelope.

Example::

    server = InstrumentServer(driver, "tcp://127.0.0.1:*")
    server.start()                       # serve in a background thread
    print(server.address)                # e.g. tcp://127.0.0.1:43127
    ...
    server.close()
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import zmq
import zmq.auth.thread

from instruments.drivers import Driver
from instruments.protocol import DEFAULT_MAX_MESSAGE_BYTES, PROTOCOL_VERSION, Reply, encode_reply
from instruments.security import ServerSecurity, check_plain_allowed
from instruments.service import InstrumentService

__all__ = ["InstrumentServer", "EVENT_TOPICS"]

logger = logging.getLogger(__name__)

EVENT_TOPICS = ("state", "job", "progress", "lease")
_POLL_MS = 50
_ZAP_DOMAIN = "crucible"


class InstrumentServer:
    """Serves one driver over ZeroMQ.

    The sockets are bound in the constructor, so ``address`` (and ``events_address``) are known at once, also
    for random ports (``tcp://127.0.0.1:*``).

    Args:
        driver: the instrument driver.
        address: the endpoint to bind the ROUTER socket, e.g. ``tcp://127.0.0.1:*`` or ``tcp://0.0.0.0:5555``.
        name: the instrument's name in replies, events and logs (default: from ``driver.describe()``).
        events_address: if given, a PUB socket is bound there and streams events as two frames
            ``[topic, json]`` with topics ``EVENT_TOPICS`` and body
            ``{"v", "seq", "time_s", "instrument", "topic", "data"}``.
        security: CurveZMQ keys and client allow-lists; required for non-loopback addresses unless
            ``allow_insecure``.
        allow_insecure: serve without encryption on a non-loopback address (trusted networks only).
        require_lease: controlling commands need a lease even when nobody holds one.
        history: how many jobs are remembered.
        max_message_bytes: the largest request answered; larger ones get a ``protocol`` error reply, and
            frames beyond ``max_message_bytes + 1 MiB`` make ZeroMQ drop the sending connection.
        context: the ZeroMQ context (default: a private one, terminated by ``close``).
        journal: a SQLite file where the server keeps its job history, so that after a restart it still answers
            for the jobs it ran and reports a job the restart interrupted as failed (None: in memory).
    """

    def __init__(
        self,
        driver: Driver,
        address: str,
        *,
        name: str | None = None,
        events_address: str | None = None,
        security: ServerSecurity | None = None,
        allow_insecure: bool = False,
        require_lease: bool = False,
        history: int = 1000,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        context: zmq.Context[Any] | None = None,
        journal: str | Path | None = None,
    ) -> None:
        if security is None:
            check_plain_allowed(address, allow_insecure, "server")
            if events_address is not None:
                check_plain_allowed(events_address, allow_insecure, "events")
        self._security = security
        self._own_context = context is None
        self._context: zmq.Context[Any] = context if context is not None else zmq.Context()
        self._pub_lock = threading.Lock()
        self._seq = 0
        self._closing = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._serving = threading.Lock()
        self._authenticator: zmq.auth.thread.ThreadAuthenticator | None = None
        self._router: zmq.Socket[bytes] | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self._released = False
        self.service = InstrumentService(
            driver,
            name=name,
            require_lease=require_lease,
            history=history,
            max_message_bytes=max_message_bytes,
            on_event=self._publish if events_address is not None else None,
            journal=journal,
        )
        try:
            if security is not None:
                self._authenticator = zmq.auth.thread.ThreadAuthenticator(self._context, log=logger)
                self._authenticator.start()
                self._authenticator.configure_curve_callback(domain=_ZAP_DOMAIN, credentials_provider=security)
            self._router = self._bind(zmq.ROUTER, address, max_message_bytes + (1 << 20))
            self._address = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
            self._events_address: str | None = None
            if events_address is not None:
                self._pub = self._bind(zmq.PUB, events_address, 1 << 16)
                self._events_address = self._pub.getsockopt_string(zmq.LAST_ENDPOINT)
        except BaseException:
            self._release()
            raise
        logger.info("instrument %r listening on %s", self.service.name, self._address)

    @property
    def address(self) -> str:
        """The bound request endpoint, with the real port (e.g. ``tcp://127.0.0.1:43127``)."""
        return self._address

    @property
    def events_address(self) -> str | None:
        """The bound PUB endpoint, or None without events."""
        return self._events_address

    @property
    def name(self) -> str:
        """The instrument's name."""
        return self.service.name

    def serve_forever(self) -> None:
        """Serve in this thread until ``close()`` or a ``shutdown`` command, then release the sockets."""
        if not self._serving.acquire(blocking=False):
            raise RuntimeError("this server is already serving")
        try:
            self._loop()
        finally:
            self.service.close()
            self._release()
            self._serving.release()
            self._closed.set()

    def start(self) -> InstrumentServer:
        """Serve in a background daemon thread; returns at once (the sockets are already bound)."""
        if self._thread is not None:
            raise RuntimeError("this server was already started")
        self._thread = threading.Thread(target=self.serve_forever, name=f"server-{self.name}", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop serving, abort any running job and release the sockets; waits up to ``timeout_s`` seconds."""
        self._closing.set()
        if self._thread is not None:
            if self._thread is not threading.current_thread():
                self._thread.join(timeout_s)
        elif not self._serving.locked():
            self.service.close()
            self._release()
            self._closed.set()
        else:
            self._closed.wait(timeout_s)

    def wait_closed(self, timeout_s: float | None = None) -> bool:
        """Wait until the server has stopped serving (after ``close`` or ``shutdown``); True if it has."""
        return self._closed.wait(timeout_s)

    def __enter__(self) -> InstrumentServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _bind(self, socket_type: int, address: str, max_in_bytes: int) -> zmq.Socket[bytes]:
        """A socket bound to ``address``; options are set first, as a listener copies them when binding."""
        socket = self._context.socket(socket_type)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, max_in_bytes)
        if self._security is not None:
            socket.curve_secretkey = self._security.secret_key
            socket.curve_publickey = self._security.public_key
            socket.curve_server = True
            socket.zap_domain = _ZAP_DOMAIN.encode()
        try:
            socket.bind(address)
        except zmq.ZMQError:
            socket.close(0)
            raise
        return socket

    def _loop(self) -> None:
        router = self._router
        if router is None:
            raise RuntimeError("this server is closed")
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        while not (self._closing.is_set() or self.service.shutdown_requested.is_set()):
            if not poller.poll(_POLL_MS):
                continue
            for _ in range(1000):  # drain what is queued, then look at the flags again
                try:
                    frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._answer(router, frames)
        if self.service.shutdown_requested.is_set():
            logger.info("instrument %r shutting down on request", self.name)

    def _answer(self, router: zmq.Socket[bytes], frames: list[zmq.Frame]) -> None:
        identity, rest = frames[0].bytes, frames[1:]
        prefix: list[bytes] = []
        if len(rest) >= 2 and len(rest[0]) == 0:  # a REQ client's empty delimiter
            prefix, rest = [b""], rest[1:]
        client = ""
        allowed: frozenset[str] | None = None
        if self._security is not None:
            client = _user_id(frames[-1])
            allowed = self._security.allowed_for(client)
        if len(rest) != 1:
            reply = encode_reply(
                Reply.failure("", "protocol", f"expected one frame per request, got {len(rest)}")
            )
        else:
            reply = self.service.handle(rest[0].bytes, allowed=allowed, client=client)
        try:
            router.send_multipart([identity, *prefix, reply], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the peer is gone or not reading; drop the reply
            logger.info("could not reply to a client of %r: %s", self.name, exc)

    def _publish(self, topic: str, data: dict[str, Any]) -> None:
        with self._pub_lock:
            if self._pub is None:
                return
            self._seq += 1
            event = {
                "v": PROTOCOL_VERSION,
                "seq": self._seq,
                "time_s": time.time(),
                "instrument": self.name,
                "topic": topic,
                "data": data,
            }
            try:
                body = json.dumps(event, allow_nan=False, separators=(",", ":")).encode("utf-8")
                self._pub.send_multipart([topic.encode(), body], zmq.NOBLOCK)
            except (zmq.ZMQError, TypeError, ValueError) as exc:
                logger.warning("could not publish a %r event: %s", topic, exc)

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        with self._pub_lock:
            for socket in (self._router, self._pub):
                if socket is not None:
                    socket.close(0)
            self._router = self._pub = None
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        if self._own_context:
            self._context.term()


def _user_id(frame: zmq.Frame) -> str:
    try:
        return str(frame.get("User-Id") or "")
    except zmq.ZMQError:
        return ""
