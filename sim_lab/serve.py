"""Serve one simulated instrument over the lab's ZeroMQ protocol: ``python -m sim_lab.serve --instrument``.

Prints ``serving <kind> at <address>`` (the bound address, with the real port) once the socket is bound, then
serves until SIGTERM, SIGINT or a ``shutdown`` command. The server keeps its job history in
``<tray>/jobs/<name>.sqlite`` (``--journal``), so a restarted server answers for the jobs it ran, and logs every
job start and end to ``--log-file`` (default: stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from instruments.drivers import DIFFRACTOMETER, PDF, SAXS, SYNTHESISER, XAS
from instruments.security import ServerSecurity
from instruments.server import InstrumentServer
from sim_lab.drivers import (
    SimulatedDiffractometer,
    SimulatedPDF,
    SimulatedSAXS,
    SimulatedSynthesiser,
    SimulatedXAS,
)
from sim_lab.faults import FaultConfig, FaultyDriver
from sim_lab.scenarios import SCENARIOS, get_scenario
from sim_lab.tray import SampleTray

__all__ = ["build_driver", "main"]

DRIVERS: dict[str, Any] = {
    SYNTHESISER: SimulatedSynthesiser,
    DIFFRACTOMETER: SimulatedDiffractometer,
    SAXS: SimulatedSAXS,
    PDF: SimulatedPDF,
    XAS: SimulatedXAS,
}
INSTRUMENTS = tuple(DRIVERS)


def build_driver(
    instrument: str, scenario_name: str, tray_dir: str, seed: int, time_factor: float, name: str | None = None
) -> Any:
    """The simulated driver of kind ``instrument`` for ``scenario_name``, sharing the tray at ``tray_dir``."""
    scenario = get_scenario(scenario_name)
    tray = SampleTray(tray_dir)
    if instrument not in DRIVERS:
        raise ValueError(f"unknown instrument {instrument!r}; simulated instruments: {list(INSTRUMENTS)}")
    return DRIVERS[instrument](scenario, tray, time_factor=time_factor, seed=seed, name=name or f"sim-{instrument}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sim_lab.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--instrument", required=True, choices=INSTRUMENTS)
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--address", required=True, help="endpoint to bind, e.g. tcp://127.0.0.1:5555")
    parser.add_argument("--tray", required=True, help="sample-tray directory shared by the simulated instruments")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-factor", type=float, default=0.0, help="wall seconds per realistic second")
    parser.add_argument("--name", default=None, help="instrument name in replies and logs")
    parser.add_argument("--events-address", default=None, help="endpoint to bind a PUB socket for events")
    parser.add_argument("--secret-key", default=None, help="this server's CurveZMQ .key_secret file (encrypts)")
    parser.add_argument("--controller-key", action="append", default=[], help="a client .key file that may control")
    parser.add_argument("--viewer-key", action="append", default=[], help="a client .key file that may only read")
    parser.add_argument(
        "--journal", default=None, help="SQLite file of the job history (default: <tray>/jobs/<name>.sqlite)"
    )
    parser.add_argument("--log-file", default=None, help="append the server's log here (default: stderr)")
    parser.add_argument(
        "--faults",
        default=None,
        help="JSON object of fault settings, e.g. '{\"error_probability\": 0.1}' (see sim_lab.faults.FaultConfig)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        filename=args.log_file,
        format="%(asctime)s pid=%(process)d %(name)s %(levelname)s %(message)s",
    )
    driver = build_driver(args.instrument, args.scenario, args.tray, args.seed, args.time_factor, args.name)
    if args.faults:
        config = FaultConfig.from_mapping(json.loads(args.faults))
        if config.enabled:
            name = args.name or driver.describe()["name"]
            state_path = Path(args.tray) / f".faults-{quote(name, safe='')}.json"
            driver = FaultyDriver(driver, config, seed=args.seed, state_path=state_path)
    security = None
    if args.secret_key:
        security = ServerSecurity.from_key_files(
            args.secret_key, controllers=args.controller_key, viewers=args.viewer_key
        )
    name = args.name or f"sim-{args.instrument}"
    journal = args.journal or Path(args.tray) / "jobs" / f"{quote(name, safe='')}.sqlite"
    server = InstrumentServer(
        driver, args.address, name=args.name, events_address=args.events_address, security=security, journal=journal
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"serving {driver.kind} at {server.address}", flush=True)
    try:
        while not stop.is_set() and not server.wait_closed(0.2):
            pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
