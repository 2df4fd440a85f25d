"""How real hardware plugs in: a driver for a diffractometer that speaks an SCPI-like text protocol over TCP.

The instrument's own controller listens on a TCP port and answers one line per command (``\\n``-terminated,
ASCII). This skeleton assumes the small command set below; a real instrument's manual gives its own, and only
``ScpiDiffractometer`` needs to change. Everything else (protocol, server, clients, leases, emergency stop)
is Crucible's and stays the same::

    *IDN?                      -> "<maker>,<model>,<serial>,<firmware>"
    SCAN:RANG <start>,<stop>,<step>   (2θ in degrees)   -> "OK"
    SCAN:TIME <seconds per step>                        -> "OK"
    INIT                       start the scan           -> "OK"
    STAT?                      -> "IDLE" | "RUN,<fraction done>" | "DONE" | "ERR,<message>"
    FETC?                      -> "<n>;<count 1>,<count 2>,...,<count n>"
    ABOR                       stop now, shutter closed -> "OK"

Serve it on the lab's wire (then point a campaign at ``tcp://<this host>:5555``)::

    python examples/scpi_diffractometer.py --instrument 192.168.10.7:5025 --bind tcp://0.0.0.0:5555 \\
        --keys /etc/crucible/keys --server-key xrd-1 --controller orchestrator --viewer dashboard
"""

from __future__ import annotations

import argparse
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from instruments import (
    DIFFRACTOMETER,
    Diffractogram,
    InstrumentServer,
    JobContext,
    ServerSecurity,
)

logger = logging.getLogger("scpi_diffractometer")


class ScpiError(RuntimeError):
    """The instrument reported an error or answered something unexpected."""


class ScpiLink:
    """One TCP connection to the instrument's controller: a line out, a line back, reconnecting when broken.

    Args:
        host: the controller's host name or IP address.
        port: its TCP port (5025 is the customary SCPI port).
        timeout_s: how long one answer may take, in seconds.
    """

    def __init__(self, host: str, port: int, timeout_s: float = 5.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._lock = threading.Lock()  # run() polls while abort() arrives from another thread

    def query(self, command: str) -> str:
        """Send ``command`` and return the answer line (without the newline).

        Raises:
            ScpiError: the connection broke or timed out (the next query reconnects).
        """
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
                    self._buffer = b""
                self._sock.sendall(command.encode("ascii") + b"\n")
                while b"\n" not in self._buffer:
                    chunk = self._sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("the instrument closed the connection")
                    self._buffer += chunk
            except (OSError, ConnectionError) as exc:
                self.close_unlocked()
                raise ScpiError(f"{self.host}:{self.port} {command.split()[0]!r}: {exc}") from exc
            line, _, self._buffer = self._buffer.partition(b"\n")
            return line.decode("ascii", "replace").strip()

    def command(self, command: str) -> None:
        """Send a setting command that must be acknowledged with ``OK``."""
        answer = self.query(command)
        if answer != "OK":
            raise ScpiError(f"{command!r} was answered {answer!r}, expected 'OK'")

    def close(self) -> None:
        """Drop the connection."""
        with self._lock:
            self.close_unlocked()

    def close_unlocked(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class ScpiDiffractometer:
    """A ``Driver`` for a powder diffractometer behind an SCPI-like TCP controller.

    Run params (all optional): ``two_theta_start_deg`` (10), ``two_theta_stop_deg`` (80), ``step_deg``
    (0.02), ``time_per_step_s`` (0.5), ``sample_id`` (None). The result is ``{"reading": Diffractogram}``.

    Args:
        host: the controller's address.
        port: the controller's TCP port.
        wavelength_angstrom: the tube's Kα1 wavelength in Å (Cu: 1.5406).
        wavelength_ka2_angstrom: the Kα2 wavelength in Å, or None behind a monochromator.
        poll_s: how often the scan status is read, in seconds.
        timeout_s: how long one answer may take, in seconds.
    """

    kind = DIFFRACTOMETER

    def __init__(
        self,
        host: str,
        port: int,
        *,
        wavelength_angstrom: float = 1.5406,
        wavelength_ka2_angstrom: float | None = 1.5444,
        poll_s: float = 0.5,
        timeout_s: float = 5.0,
    ) -> None:
        self.link = ScpiLink(host, port, timeout_s)
        self.wavelength_angstrom = wavelength_angstrom
        self.wavelength_ka2_angstrom = wavelength_ka2_angstrom
        self.poll_s = poll_s

    def describe(self) -> dict[str, Any]:
        """Identity from ``*IDN?`` plus the accepted run params with units."""
        maker, model, serial, firmware = (self.link.query("*IDN?").split(",") + ["?"] * 4)[:4]
        return {
            "name": f"{model}-{serial}",
            "kind": self.kind,
            "maker": maker,
            "model": model,
            "serial_number": serial,
            "firmware": firmware,
            "wavelength_angstrom": self.wavelength_angstrom,
            "params": {
                "two_theta_start_deg": "deg",
                "two_theta_stop_deg": "deg",
                "step_deg": "deg",
                "time_per_step_s": "s",
                "sample_id": "str",
            },
        }

    def run(self, params: dict[str, Any], job: JobContext) -> dict[str, Any]:
        """Configure, start and follow one scan; fetch the counts; return the pattern."""
        start = float(params.get("two_theta_start_deg", 10.0))
        stop = float(params.get("two_theta_stop_deg", 80.0))
        step = float(params.get("step_deg", 0.02))
        dwell = float(params.get("time_per_step_s", 0.5))
        if not (0.0 < start < stop < 180.0 and step > 0.0 and dwell > 0.0):
            raise ValueError(f"bad scan: 2θ {start}..{stop}° step {step}° dwell {dwell} s")
        self.link.command(f"SCAN:RANG {start:.4f},{stop:.4f},{step:.5f}")
        self.link.command(f"SCAN:TIME {dwell:.4f}")
        self.link.command("INIT")
        while True:
            if job.aborted:
                raise RuntimeError("scan aborted")  # abort() has already sent ABOR
            status = self.link.query("STAT?")
            state, _, detail = status.partition(",")
            if state == "DONE":
                break
            if state == "ERR":
                raise ScpiError(f"instrument error: {detail}")
            if state == "RUN":
                job.progress(min(1.0, max(0.0, float(detail or 0.0))), "scanning")
            elif state != "IDLE":
                raise ScpiError(f"unexpected status {status!r}")
            time.sleep(self.poll_s)
        counts = _parse_counts(self.link.query("FETC?"))
        two_theta = start + step * np.arange(counts.size)
        pattern = Diffractogram(
            two_theta_deg=two_theta,
            counts=counts,
            wavelength_angstrom=self.wavelength_angstrom,
            wavelength_ka2_angstrom=self.wavelength_ka2_angstrom,
            counting_time_s=dwell,
            sample_id=params.get("sample_id"),
            metadata={"instrument": "scpi"},
        )
        return {"reading": pattern.as_dict()}

    def abort(self) -> None:
        """Send ``ABOR``: the controller stops the scan and closes the shutter."""
        self.link.command("ABOR")


def _parse_counts(answer: str) -> np.ndarray:
    header, _, body = answer.partition(";")
    try:
        n = int(header)
        counts = np.array([float(v) for v in body.split(",")] if body else [], dtype=np.float64)
    except ValueError as exc:
        raise ScpiError(f"FETC? answer is not '<n>;<counts>': {answer[:60]!r}") from exc
    if counts.size != n:
        raise ScpiError(f"FETC? announced {n} counts but sent {counts.size} (truncated?)")
    return counts


def main() -> None:
    """Serve one SCPI diffractometer on the lab's wire until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instrument", required=True, help="host:port of the instrument's controller")
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint to serve on")
    parser.add_argument("--keys", type=Path, help="directory of CurveZMQ key files (instruments.keys)")
    parser.add_argument("--server-key", default="xrd-1", help="this server's key pair name in --keys")
    parser.add_argument("--controller", action="append", default=[], help="key name allowed every command")
    parser.add_argument("--viewer", action="append", default=[], help="key name allowed to read only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    host, _, port = args.instrument.rpartition(":")
    security = None
    if args.keys is not None:
        security = ServerSecurity.from_key_files(
            args.keys / f"{args.server_key}.key_secret",
            controllers=[args.keys / f"{name}.key" for name in args.controller],
            viewers=[args.keys / f"{name}.key" for name in args.viewer],
        )
    server = InstrumentServer(ScpiDiffractometer(host, int(port)), args.bind, security=security)
    print(f"serving {server.name} on {server.address}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.close()


if __name__ == "__main__":
    main()
