"""A real Prefect server (API and UI) as a subprocess: on SQLite in a directory or on PostgreSQL by URL.

``PrefectServer`` starts ``prefect server start --host HOST --port PORT`` with its own ``PREFECT_HOME``, waits until
``/api/health`` answers, and stops the whole process group on exit::

    with PrefectServer(database_url="postgresql://postgres@127.0.0.1:5432/prefect") as server:
        os.environ["PREFECT_API_URL"] = server.api_url      # flows, workers and deployments talk to it
        print("dashboard at", server.ui_url)

Prefect's server only speaks async database drivers: a PostgreSQL URL given with ``psycopg2`` (or no driver, as
Crucible's own campaign database takes it) is rewritten to ``postgresql+asyncpg://``; a SQLite URL to
``sqlite+aiosqlite://``. Server telemetry is off (``PREFECT_SERVER_ANALYTICS_ENABLED=false``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

__all__ = ["PrefectServer", "PrefectServerError", "free_port", "prefect_database_url"]


class PrefectServerError(RuntimeError):
    """The Prefect server did not start (the message carries the tail of its log)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def prefect_database_url(url: str) -> str:
    """``url`` with the async driver Prefect's server needs (asyncpg for PostgreSQL, aiosqlite for SQLite)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    dialect = scheme.split("+", 1)[0]
    if dialect in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    if dialect == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    raise ValueError(f"Prefect's server runs on PostgreSQL or SQLite, not {dialect!r} ({url!r})")


class PrefectServer:
    """A Prefect server subprocess; a context manager that starts it and stops it.

    Args:
        database_url: PostgreSQL (or SQLite) URL of the server's own database. ``None``: SQLite in ``home``.
        port: TCP port of the API and UI; ``None`` picks a free one.
        host: address to listen on; ``127.0.0.1`` for this machine only, ``0.0.0.0`` for workers on other hosts.
        home: the server's ``PREFECT_HOME`` (its SQLite file, UI build and log ``server.log``); ``None``: a
            temporary directory removed on :meth:`stop`.
        public_host: the host name browsers and workers use to reach the server (default: ``host``, or this
            machine's name when listening on every interface); it goes into ``api_url`` and the UI's API URL.
        startup_timeout_s: how long to wait for ``/api/health`` (database migrations run at start-up).
    """

    def __init__(
        self,
        database_url: str | None = None,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        home: Path | str | None = None,
        public_host: str | None = None,
        startup_timeout_s: float = 180.0,
    ) -> None:
        self.host = host
        self.port = port or free_port("127.0.0.1" if host in ("0.0.0.0", "::") else host)
        self.database_url = prefect_database_url(database_url) if database_url else None
        self._given_home = Path(home) if home is not None else None
        self.home: Path | None = self._given_home
        if public_host is None:
            public_host = socket.gethostname() if host in ("0.0.0.0", "::") else host
        self.public_host = public_host
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # --- addresses ---------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.public_host}:{self.port}"

    @property
    def api_url(self) -> str:
        """What ``PREFECT_API_URL`` should be for flows and workers: ``http://HOST:PORT/api``."""
        return f"{self.url}/api"

    @property
    def ui_url(self) -> str:
        """The dashboard's address."""
        return self.url

    @property
    def log_path(self) -> Path:
        assert self.home is not None, "the server has not been started"
        return self.home / "server.log"

    def environment(self) -> dict[str, str]:
        """The environment the server process runs with."""
        assert self.home is not None
        env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
        env |= {
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_SERVER_LOGGING_LEVEL": os.environ.get("PREFECT_SERVER_LOGGING_LEVEL", "WARNING"),
            "PREFECT_API_URL": self.api_url,
        }
        if self.database_url is not None:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database_url
        return env

    # --- life cycle --------------------------------------------------------------------------------------------
    def start(self) -> PrefectServer:
        if self.process is not None:
            raise PrefectServerError("the server is already running")
        if self.home is None:
            self.home = Path(tempfile.mkdtemp(prefix="crucible-prefect-"))
        self.home.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "prefect", "server", "start", "--host", self.host, "--port", str(self.port)]
        # Its own session: stop() ends the server and every process it started (services, uvicorn), and nothing else.
        self.process = subprocess.Popen(
            command,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def healthy(self) -> bool:
        """Whether ``/api/health`` answers now."""
        local = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        try:
            with urllib.request.urlopen(f"http://{local}:{self.port}/api/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrefectServerError(
                    f"the Prefect server exited with status {self.process.returncode}: {self.log_tail()}"
                )
            if self.healthy():
                return
            time.sleep(0.5)
        raise PrefectServerError(
            f"the Prefect server did not answer at {self.api_url}/health within {self.startup_timeout_s:g} s: "
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL after ``timeout_s``) and tidy up."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        if process is not None:
            _signal_group(process, signal.SIGKILL)  # stragglers of the group (services, uvicorn children)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._given_home is None and self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None

    def serve_forever(self) -> None:
        """Block while the server runs (for ``crucible server``); raise if it dies."""
        assert self.process is not None
        returncode = self.process.wait()
        raise PrefectServerError(f"the Prefect server exited with status {returncode}: {self.log_tail()}")

    def __enter__(self) -> PrefectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM when the process that started the server dies (even by
    SIGKILL), so a killed test run or CLI leaves no orphaned server behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signal the process group led by ``process`` (started with ``start_new_session``), only that group."""
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
