"""The lab as the orchestrator sees it: one protocol client per instrument named in the campaign file.

Real and simulated instruments look the same from here: an address that answers the instrument protocol.
"""

from __future__ import annotations

from instruments.client import InstrumentClient
from instruments.errors import InstrumentError, InstrumentTimeout, InstrumentUnreachable, LeaseError
from instruments.security import ClientSecurity
from orchestrator.spec import CampaignSpec, InstrumentSpec

__all__ = ["Lab"]


class Lab:
    """Clients for the instruments of a campaign, connected lazily and closed together."""

    def __init__(
        self,
        instruments: dict[str, InstrumentSpec],
        client_key: str | None = None,
        holder: str | None = None,
        heartbeat_s: float | None = None,
    ) -> None:
        self.instruments = dict(instruments)
        self.client_key = client_key
        self.holder = holder
        self.heartbeat_s = heartbeat_s
        self._clients: dict[str, InstrumentClient] = {}

    @classmethod
    def from_spec(cls, spec: CampaignSpec, holder: str | None = None, heartbeat_s: float | None = None) -> Lab:
        """The campaign's instruments; ``holder`` names it in the instruments' leases, and a heartbeat (every
        ``heartbeat_s``) renews the leases it takes with :meth:`lease_all`."""
        return cls(spec.instruments, spec.client_key, holder, heartbeat_s)

    def _security(self, spec: InstrumentSpec) -> ClientSecurity | None:
        """CurveZMQ keys for an instrument with a ``server_key``; None talks plain (loopback only)."""
        if spec.server_key is None:
            return None
        assert self.client_key is not None, "the campaign file checks that client_key accompanies server_key"
        try:
            return ClientSecurity.from_key_files(self.client_key, spec.server_key)
        except (OSError, ValueError) as error:
            raise InstrumentError(f"cannot load CurveZMQ keys for {spec.address}: {error}") from None

    def client(self, name: str) -> InstrumentClient:
        if name not in self.instruments:
            raise KeyError(f"no instrument named {name!r}; known: {', '.join(self.instruments)}")
        if name not in self._clients:
            spec = self.instruments[name]
            try:
                self._clients[name] = InstrumentClient(
                    spec.address,
                    timeout_s=spec.timeout_s,
                    security=self._security(spec),
                    holder=self.holder,
                    heartbeat_s=self.heartbeat_s,
                    heartbeat_misses=10,
                )
            except ValueError as error:  # e.g. a non-loopback address without keys
                raise InstrumentError(f"instrument {name!r}: {error}") from None
        return self._clients[name]

    def check(self) -> dict[str, dict]:
        """Ping and describe every instrument; raise :class:`InstrumentUnreachable` naming the first that is silent."""
        described = {}
        for name, spec in self.instruments.items():
            try:
                description = self.client(name).describe()
            except (InstrumentTimeout, InstrumentUnreachable) as error:
                raise InstrumentUnreachable(
                    f"instrument {name!r} ({spec.kind}) does not answer at {spec.address} within {spec.timeout_s:g} s"
                ) from error
            except InstrumentError as error:
                raise type(error)(f"instrument {name!r} at {spec.address}: {error}") from None
            kind = description.get("kind")
            if kind is not None and kind != spec.kind:
                raise InstrumentError(f"instrument {name!r} at {spec.address} is a {kind}, not a {spec.kind}")
            described[name] = description
        return described

    def lease_all(self, duration_s: float, tokens: dict[str, str] | None = None) -> dict[str, str]:
        """Take the lease of every instrument (renewing those whose ``tokens`` are given); return the tokens.

        Raises:
            LeaseError: an instrument is leased by someone else; the message names it and its holder.
        """
        held: dict[str, str] = {}
        for name, spec in self.instruments.items():
            try:
                held[name] = self.client(name).acquire_lease(duration_s, (tokens or {}).get(name))["token"]
            except LeaseError as error:
                self.release_all()
                raise LeaseError(
                    error.error_type, f"instrument {name!r} at {spec.address} refused the lease: {error.message}"
                ) from None
        return held

    def use_leases(self, tokens: dict[str, str]) -> None:
        """Work under leases another process holds and renews (``tokens``: instrument name -> lease token), as a
        distributed campaign's workers do under its coordinator's leases."""
        for name, token in tokens.items():
            if name in self.instruments:
                self.client(name).use_lease(token)

    def release_all(self) -> None:
        """Give back every lease this lab holds (an instrument that does not answer keeps it until it expires)."""
        for client in self._clients.values():
            try:
                client.release_lease()
            except InstrumentError:
                continue

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
