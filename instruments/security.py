"""CurveZMQ settings of servers and clients: keys, per-client command allow-lists and the loopback rule.

A server with ``ServerSecurity`` encrypts every connection and admits only the client public keys it lists;
each listed key carries the set of commands it may send (``VIEWER`` may only read, ``CONTROLLER`` may do all).
Unknown keys are refused during the handshake by a ZAP authenticator, and the refusal is logged. Plain
(unencrypted) sockets are allowed on loopback only unless explicitly requested.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from instruments.keys import check_z85_key, load_keypair, load_public_key
from instruments.service import COMMANDS, READ_ONLY_COMMANDS

__all__ = [
    "ServerSecurity",
    "ClientSecurity",
    "VIEWER",
    "CONTROLLER",
    "is_loopback",
    "check_plain_allowed",
]

logger = logging.getLogger(__name__)

VIEWER: frozenset[str] = READ_ONLY_COMMANDS
"""May ping, describe, read status and jobs; may not run, abort, stop or lease."""
CONTROLLER: frozenset[str] = COMMANDS
"""May send every command."""


@dataclass(frozen=True)
class ServerSecurity:
    """The CurveZMQ identity of a server and the clients it admits.

    Attributes:
        public_key: the server's 40-character Z85 public key (clients need it).
        secret_key: the server's Z85 secret key.
        clients: Z85 client public key -> the commands that client may send.
    """

    public_key: bytes
    secret_key: bytes
    clients: Mapping[bytes, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_key", check_z85_key(self.public_key, "server public key"))
        object.__setattr__(self, "secret_key", check_z85_key(self.secret_key, "server secret key"))
        clients: dict[bytes, frozenset[str]] = {}
        for key, commands in self.clients.items():
            unknown = set(commands) - COMMANDS
            if unknown:
                message = f"allow-list names unknown command(s) {sorted(unknown)}; known: {sorted(COMMANDS)}"
                raise ValueError(message)
            clients[check_z85_key(key, "client public key")] = frozenset(commands)
        object.__setattr__(self, "clients", clients)

    @classmethod
    def from_key_files(
        cls,
        server_secret_file: str | os.PathLike[str],
        *,
        controllers: Iterable[str | os.PathLike[str]] = (),
        viewers: Iterable[str | os.PathLike[str]] = (),
        allow_lists: Mapping[str | os.PathLike[str], Iterable[str]] | None = None,
    ) -> ServerSecurity:
        """Load the server's key pair and its clients' public key files.

        Args:
            server_secret_file: the server's ``.key_secret`` file.
            controllers: public key files of clients allowed every command.
            viewers: public key files of read-only clients.
            allow_lists: further public key files, each with its own command list.
        """
        public, secret = load_keypair(server_secret_file)
        clients: dict[bytes, frozenset[str]] = {}
        for path in controllers:
            clients[load_public_key(path)] = CONTROLLER
        for path in viewers:
            clients[load_public_key(path)] = VIEWER
        for path, commands in (allow_lists or {}).items():
            clients[load_public_key(path)] = frozenset(commands)
        return cls(public_key=public, secret_key=secret, clients=clients)

    def allowed_for(self, client_key: str | bytes) -> frozenset[str]:
        """The commands the client with Z85 public key ``client_key`` may send (empty if unknown)."""
        raw = client_key.encode("ascii", "replace") if isinstance(client_key, str) else client_key
        return self.clients.get(raw, frozenset())

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP credentials check (``zmq.auth`` calls it with the client's Z85 key); logs every refusal."""
        if key in self.clients:
            return True
        client = key.decode("ascii", "replace")
        logger.warning("refused CurveZMQ client with unknown key %s (domain %r)", client, domain)
        return False


@dataclass(frozen=True)
class ClientSecurity:
    """The CurveZMQ identity of a client and the server key it expects.

    Attributes:
        public_key: the client's Z85 public key (the server must list it).
        secret_key: the client's Z85 secret key.
        server_public_key: the server's Z85 public key.
    """

    public_key: bytes
    secret_key: bytes
    server_public_key: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_key", check_z85_key(self.public_key, "client public key"))
        object.__setattr__(self, "secret_key", check_z85_key(self.secret_key, "client secret key"))
        server_key = check_z85_key(self.server_public_key, "server public key")
        object.__setattr__(self, "server_public_key", server_key)

    @classmethod
    def from_key_files(
        cls, client_secret_file: str | os.PathLike[str], server_public_file: str | os.PathLike[str]
    ) -> ClientSecurity:
        """Load the client's ``.key_secret`` file and the server's ``.key`` file."""
        public, secret = load_keypair(client_secret_file)
        server_key = load_public_key(server_public_file)
        return cls(public_key=public, secret_key=secret, server_public_key=server_key)


def is_loopback(address: str) -> bool:
    """True if a ZeroMQ endpoint cannot leave this machine (``inproc``, ``ipc``, TCP on a loopback host)."""
    transport, _, rest = address.partition("://")
    if transport in ("inproc", "ipc"):
        return True
    if transport != "tcp" or not rest:
        return False
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    host = host.split(";")[-1].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_plain_allowed(address: str, allow_insecure: bool, role: str) -> None:
    """Refuse an unencrypted endpoint off loopback unless ``allow_insecure``.

    Raises:
        ValueError: naming the address and the two ways out.
    """
    if not allow_insecure and not is_loopback(address):
        raise ValueError(
            f"{role} address {address} is not loopback: CurveZMQ is required there; pass security=... "
            "(see instruments.keys.generate_keypair) or allow_insecure=True"
        )
