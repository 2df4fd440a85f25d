"""The lab as the orchestrator sees it: one protocol client per instrument named in the campaign file.

Real and simulated instruments look the same from here: an address that answers the instrument protocol.
"""

from __future__ import annotations

from instruments.client import InstrumentClient
from instruments.errors import InstrumentError, InstrumentUnreachable
from orchestrator.spec import CampaignSpec, InstrumentSpec

__all__ = ["Lab"]


class Lab:
    """Clients for the instruments of a campaign, connected lazily and closed together."""

    def __init__(self, instruments: dict[str, InstrumentSpec]) -> None:
        self.instruments = dict(instruments)
        self._clients: dict[str, InstrumentClient] = {}

    @classmethod
    def from_spec(cls, spec: CampaignSpec) -> Lab:
        return cls(spec.instruments)

    def client(self, name: str) -> InstrumentClient:
        if name not in self.instruments:
            raise KeyError(f"no instrument named {name!r}; known: {', '.join(self.instruments)}")
        if name not in self._clients:
            self._clients[name] = InstrumentClient(
                self.instruments[name].address, timeout_s=self.instruments[name].timeout_s
            )
        return self._clients[name]

    def check(self) -> dict[str, dict]:
        """Ping and describe every instrument; raise :class:`InstrumentUnreachable` naming the first that is silent."""
        described = {}
        for name, spec in self.instruments.items():
            try:
                description = self.client(name).describe()
            except InstrumentError as error:
                raise InstrumentUnreachable(
                    f"instrument {name!r} ({spec.kind}) does not answer at {spec.address} within {spec.timeout_s:g} s"
                ) from error
            kind = description.get("kind")
            if kind is not None and kind != spec.kind:
                raise InstrumentError(f"instrument {name!r} at {spec.address} is a {kind}, not a {spec.kind}")
            described[name] = description
        return described

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
