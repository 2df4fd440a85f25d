"""Emergency stop of a whole lab: send ``stop`` to every instrument at once, leased or not.

``stop`` needs no lease, so it is honoured while another client controls an instrument. Each instrument is
stopped on its own thread, so one dead address does not delay the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from instruments.client import InstrumentClient
from instruments.errors import InstrumentError
from instruments.security import ClientSecurity

__all__ = ["stop_all"]

logger = logging.getLogger(__name__)


def stop_all(
    addresses: Iterable[str],
    *,
    timeout_s: float = 2.0,
    security: ClientSecurity | Mapping[str, ClientSecurity | None] | None = None,
    allow_insecure: bool = False,
) -> dict[str, InstrumentError | None]:
    """Emergency-stop every instrument in ``addresses`` concurrently.

    Args:
        addresses: the instruments' request endpoints.
        timeout_s: how long each stop may wait for its reply, per attempt, in seconds (``stop`` is retried
            twice, so the call ends within about ``3 * timeout_s``).
        security: CurveZMQ keys of a client allowed to send ``stop``: one set for every address, or a mapping
            address -> keys (None: plain), as each instrument has its own server key.
        allow_insecure: talk unencrypted to non-loopback addresses.

    Returns:
        Address -> None if the instrument confirmed the stop, else the error (one failure never raises).
    """
    targets = list(dict.fromkeys(addresses))
    if not targets:
        return {}

    def stop_one(address: str) -> InstrumentError | None:
        keys = security.get(address) if isinstance(security, Mapping) else security
        try:
            with InstrumentClient(
                address, timeout_s=timeout_s, security=keys, allow_insecure=allow_insecure
            ) as client:
                client.stop()
            return None
        except InstrumentError as exc:
            logger.error("emergency stop of %s failed: %s", address, exc)
            return exc
        except Exception as exc:  # e.g. a malformed address; report it, keep stopping the others
            logger.error("emergency stop of %s failed: %s", address, exc)
            return InstrumentError(f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=min(32, len(targets)), thread_name_prefix="stop_all") as pool:
        outcomes: list[Any] = list(pool.map(stop_one, targets))
    return dict(zip(targets, outcomes, strict=True))
