"""Driver interfaces: what any instrument, real or simulated, must offer to be served on the lab's wire.

A driver is a plain Python object. The :class:`~instruments.server.InstrumentServer` hosts one driver and
translates protocol commands into calls on it. Drivers never touch sockets.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Driver", "JobContext", "SYNTHESISER", "DIFFRACTOMETER", "SAXS", "PDF", "XAS"]

SYNTHESISER = "synthesiser"
DIFFRACTOMETER = "diffractometer"
SAXS = "saxs"
PDF = "pdf"
XAS = "xas"


@runtime_checkable
class JobContext(Protocol):
    """Handed to ``Driver.run``: lets a long run notice an abort and report progress."""

    job_id: str

    @property
    def aborted(self) -> bool:
        """True once an abort (or emergency stop) was requested; the driver should stop promptly."""
        ...

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress in [0, 1]."""
        ...


@runtime_checkable
class Driver(Protocol):
    """One instrument.

    ``kind`` is one of the technique names above. ``run`` is blocking and returns a JSON-serialisable dict:
    for a synthesiser ``{"sample_id": ..., ...}``, for a characterisation instrument
    ``{"reading": reading.as_dict()}``.
    A driver raises an exception to report a failed run; the server turns it into an error reply.
    """

    kind: str

    def describe(self) -> dict[str, Any]:
        """Static facts: name, kind, accepted run parameters with units, model, serial number."""
        ...

    def run(self, params: dict[str, Any], job: JobContext) -> dict[str, Any]:
        """Carry out one run with ``params``; block until done; return the result payload."""
        ...

    def abort(self) -> None:
        """Bring the instrument to a safe state now (called from another thread)."""
        ...
