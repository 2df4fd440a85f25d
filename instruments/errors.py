"""Every failure the lab's wire can report, as one exception tree with builtin bases.

Catch ``InstrumentError`` for anything that went wrong talking to an instrument; catch a leaf to react to one
cause. Leaves also inherit the builtin that fits, so ``except TimeoutError`` keeps working::

    InstrumentError(Exception)
    ├── InstrumentTimeout(InstrumentError, TimeoutError)      no reply within the timeout
    ├── InstrumentUnreachable(InstrumentError, ConnectionError)  nothing answers at the address
    ├── ProtocolError(InstrumentError, ValueError)             garbled, oversized or invalid message
    ├── RemoteError(InstrumentError)                           the server replied with an error
    │   ├── InstrumentBusy(RemoteError)                        another job is running ("busy")
    │   ├── InstrumentStopped(RemoteError)                     emergency stop in force ("stopped")
    │   ├── LeaseError(RemoteError)                            lease missing, held by another or expired
    │   └── Unauthorized(RemoteError, PermissionError)         command not on this client's allow-list
    ├── JobFailed(InstrumentError)                             the driver raised during a run
    │   └── JobInterrupted                                     the server restarted while the job ran
    └── JobAborted(InstrumentError)                            the run was aborted or emergency-stopped
"""

from __future__ import annotations

__all__ = [
    "InstrumentError",
    "InstrumentTimeout",
    "InstrumentUnreachable",
    "ProtocolError",
    "RemoteError",
    "InstrumentBusy",
    "InstrumentStopped",
    "LeaseError",
    "Unauthorized",
    "JobFailed",
    "JobInterrupted",
    "JobAborted",
    "remote_error",
]


class InstrumentError(Exception):
    """Root of every error raised by the ``instruments`` package."""


class InstrumentTimeout(InstrumentError, TimeoutError):
    """No reply (or no finished job) arrived within the timeout."""


class InstrumentUnreachable(InstrumentError, ConnectionError):
    """Nothing answers at the address (connect check or heartbeat failed)."""


class ProtocolError(InstrumentError, ValueError):
    """A message was garbled, oversized or broke the schema; the message names the problem.

    Attributes:
        request_id: the id of the offending request when it could be read from the message, else None.
    """

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class RemoteError(InstrumentError):
    """The server understood the request and replied with an error.

    Attributes:
        error_type: the machine-readable error type from the reply (e.g. ``"busy"``, ``"bad_params"``).
        message: the human-readable explanation from the reply.
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


class InstrumentBusy(RemoteError):
    """A different job is already running on the instrument (error type ``"busy"``)."""


class InstrumentStopped(RemoteError):
    """The instrument is emergency-stopped and refuses runs until ``reset`` (error type ``"stopped"``)."""


class LeaseError(RemoteError):
    """The command needs the instrument's lease, which this client does not hold (error type ``"lease"``)."""


class Unauthorized(RemoteError, PermissionError):
    """This client's key may not send that command (error type ``"unauthorized"``)."""


class JobFailed(InstrumentError):
    """The driver raised during a run; the message is the driver's.

    Attributes:
        job_id: the failed job's identity.
    """

    def __init__(self, job_id: str, message: str) -> None:
        super().__init__(f"job {job_id!r} failed: {message}")
        self.job_id = job_id
        self.message = message


class JobInterrupted(JobFailed):
    """The instrument's server restarted while the job ran, so it did not finish (state ``"interrupted"``); the
    server will never run it again under this id. A client may run the step again under a new job id."""


class JobAborted(InstrumentError):
    """The run was aborted (or emergency-stopped) before it finished.

    Attributes:
        job_id: the aborted job's identity.
    """

    def __init__(self, job_id: str, message: str = "aborted") -> None:
        super().__init__(f"job {job_id!r} aborted: {message}")
        self.job_id = job_id
        self.message = message


_REMOTE_TYPES: dict[str, type[RemoteError]] = {
    "busy": InstrumentBusy,
    "stopped": InstrumentStopped,
    "lease": LeaseError,
    "unauthorized": Unauthorized,
}


def remote_error(error_type: str, message: str) -> RemoteError:
    """Build the most specific ``RemoteError`` for an error reply of type ``error_type``."""
    return _REMOTE_TYPES.get(error_type, RemoteError)(error_type, message)
