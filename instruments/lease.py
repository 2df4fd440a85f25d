"""The lease of one instrument: one controller at a time, identified by a token, expiring unless renewed.

A lease is held by whoever presents its token; the token is independent of the socket, so a client that
reconnects after a timeout keeps its lease. An expired lease is free for anyone.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from instruments.jobs import Refused

__all__ = ["Lease", "LeaseKeeper", "MAX_LEASE_S"]

MAX_LEASE_S = 24 * 3600.0


@dataclass(frozen=True)
class Lease:
    """A granted lease.

    Attributes:
        token: the secret that proves holding the lease.
        holder: a human-readable name of the holder (for status and logs).
        expires_s: the expiry time on the keeper's monotonic clock, in seconds.
    """

    token: str
    holder: str
    expires_s: float


class LeaseKeeper:
    """Grants, renews, checks and releases the single lease of an instrument.

    Args:
        required: if True, controlling commands need a valid lease even when nobody holds one.
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, *, required: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.required = required
        self._clock = clock
        self._lock = threading.Lock()
        self._lease: Lease | None = None

    def current(self) -> Lease | None:
        """The unexpired lease, or None."""
        with self._lock:
            return self._live()

    def describe(self) -> dict[str, object] | None:
        """``{"holder", "expires_in_s"}`` of the unexpired lease (never its token), or None."""
        lease = self.current()
        if lease is None:
            return None
        return {"holder": lease.holder, "expires_in_s": round(max(0.0, lease.expires_s - self._clock()), 3)}

    def acquire(self, holder: str, duration_s: float, token: str | None = None) -> Lease:
        """Grant a new lease, or renew the caller's own when ``token`` is its token (a token presented for a free
        lease is kept, so a holder re-taking it after a server restart keeps its token).

        Args:
            holder: who asks (name shown to others).
            duration_s: how long the lease lasts from now, in seconds (0 < duration_s <= 24 h).
            token: the caller's current token, to renew.

        Raises:
            Refused: ``"bad_params"`` for a bad duration, ``"lease"`` if another holder's lease is live.
        """
        if not (0.0 < duration_s <= MAX_LEASE_S):
            raise Refused("bad_params", f"duration_s must be in (0, {MAX_LEASE_S:g}] s, got {duration_s}")
        with self._lock:
            live = self._live()
            if live is not None and live.token != token:
                remaining = live.expires_s - self._clock()
                message = f"instrument is leased by {live.holder!r} for another {remaining:.1f} s"
                raise Refused("lease", message)
            # The caller's own token is kept: on renewal, and when it asks again after the lease lapsed or this server
            # restarted (its heartbeat re-takes the lease; a new token would lock out its own commands). A free
            # lease can be taken by anyone anyway, so keeping a presented token grants nothing more.
            new_token = token if token is not None else secrets.token_urlsafe(24)
            self._lease = Lease(token=new_token, holder=holder, expires_s=self._clock() + duration_s)
            return self._lease

    def release(self, token: str) -> bool:
        """Release the lease if ``token`` holds it; True if a live lease was released."""
        with self._lock:
            live = self._live()
            if live is None:
                return False
            if live.token != token:
                message = f"the lease is held by {live.holder!r}; only its holder may release it"
                raise Refused("lease", message)
            self._lease = None
            return True

    def check(self, token: str | None, command: str) -> None:
        """Allow ``command`` if leasing does not apply or ``token`` holds the live lease.

        Raises:
            Refused: ``"lease"`` naming the holder or saying that a lease is required.
        """
        with self._lock:
            live = self._live()
            if live is None:
                if self.required:
                    raise Refused("lease", f"{command!r} needs the instrument's lease; acquire it first")
                return
            if token != live.token:
                remaining = live.expires_s - self._clock()
                message = f"{command!r} refused: leased by {live.holder!r} for another {remaining:.1f} s"
                raise Refused("lease", message)

    def _live(self) -> Lease | None:
        if self._lease is not None and self._lease.expires_s <= self._clock():
            self._lease = None
        return self._lease
