"""``crucible server``, ``crucible worker``, ``crucible deploy``: one command each for scale-out on Prefect.

- ``server`` starts a Prefect server (API and UI), on PostgreSQL with ``--db``, and prints the ``PREFECT_API_URL``
  that workers and deployments need;
- ``worker`` starts a Prefect process worker polling a work pool (created if missing);
- ``deploy`` registers a campaign's deployments on the pool and, with ``--run``, starts the campaign.

Mounted in the ``crucible`` CLI by ``app.add_typer(scale_app)``; runs on its own as ``python -m flows.scale_cli``.
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import signal  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import wraps  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any, TypeVar  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

__all__ = ["scale_app"]

scale_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Scale-out: a Prefect server, workers, and campaign deployments."
)
console = Console()
errors = Console(stderr=True)
DEFAULT_POOL = "crucible"

F = TypeVar("F", bound=Callable[..., Any])


class ScaleError(RuntimeError):
    """An expected failure of a scale-out command; printed as one line."""


def _one_line_errors(function: F) -> F:
    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from flows.server import PrefectServerError
        from orchestrator.campaign import CampaignError
        from orchestrator.spec import CampaignFileError

        try:
            return function(*args, **kwargs)
        except (ScaleError, CampaignFileError, CampaignError, PrefectServerError, ValueError) as error:
            message = " ".join(str(error).split())
            errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _api_url(api_url: str | None) -> str:
    """The Prefect server to talk to: ``--api-url``, else ``PREFECT_API_URL`` (environment or Prefect profile)."""
    if api_url:
        os.environ["PREFECT_API_URL"] = api_url
        return api_url
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise ScaleError(
            "no Prefect server given: start one with `crucible server` and set PREFECT_API_URL "
            "(or pass --api-url http://HOST:4200/api)"
        )
    return url


def _check_server(api_url: str) -> None:
    import httpx

    try:
        ok = httpx.get(f"{api_url.rstrip('/')}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        ok = False
    if not ok:
        raise ScaleError(f"the Prefect server does not answer at {api_url}")


ApiUrlOption = Annotated[str | None, typer.Option("--api-url", help="Prefect API URL (default: $PREFECT_API_URL).")]
PoolOption = Annotated[str, typer.Option("--pool", help="Work pool name.")]


@scale_app.command()
@_one_line_errors
def server(
    database: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Prefect's own database: a PostgreSQL URL (default: SQLite in --home). "
            "Also $CRUCIBLE_PREFECT_DATABASE_URL.",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 to serve workers on other hosts.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API and UI.")] = 4200,
    home: Annotated[Path, typer.Option(help="The server's PREFECT_HOME (SQLite file, UI build, server.log).")] = Path(
        "runs/prefect"
    ),
    public_host: Annotated[
        str | None,
        typer.Option(
            "--public-host", help="Host name workers and browsers use to reach this server (default: this host)."
        ),
    ] = None,
) -> None:
    """Start a Prefect server (API and UI) and keep it running until Ctrl-C."""
    from flows.server import PrefectServer

    database = database or os.environ.get("CRUCIBLE_PREFECT_DATABASE_URL")
    prefect_server = PrefectServer(
        database_url=database, port=port, host=host, home=home.resolve(), public_host=public_host
    )
    console.print(f"starting the Prefect server on {host}:{port} ({'PostgreSQL' if database else 'SQLite'}) ...")
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the server as cleanly as Ctrl-C does
    with prefect_server:
        console.print(f"dashboard: {prefect_server.ui_url}", soft_wrap=True)
        console.print(
            f"on every worker and deploying host:  export PREFECT_API_URL={prefect_server.api_url}",
            soft_wrap=True,
            highlight=False,
        )
        console.print(f"log: {prefect_server.log_path}; Ctrl-C to stop", soft_wrap=True)
        prefect_server.serve_forever()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@scale_app.command()
@_one_line_errors
def worker(
    pool: PoolOption = DEFAULT_POOL,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Worker name, shown on its flow runs.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-l", help="Flow runs at once (default: no limit).")] = None,
    poll_seconds: Annotated[
        float | None, typer.Option("--poll-seconds", help="How often to ask for work (default: Prefect's, 10 s).")
    ] = None,
    api_url: ApiUrlOption = None,
) -> None:
    """Start a Prefect process worker on POOL (created if missing); it runs campaign and experiment flow runs."""
    from flows.deploy import ensure_work_pool

    url = _api_url(api_url)
    _check_server(url)
    if ensure_work_pool(pool):
        console.print(f"created process work pool {pool!r}")
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
    if name:
        command += ["--name", name]
    if limit is not None:
        command += ["--limit", str(limit)]
    env = dict(os.environ, PREFECT_API_URL=url)
    if poll_seconds is not None:
        env["PREFECT_WORKER_QUERY_SECONDS"] = str(poll_seconds)
    console.print(f"worker {name or '(unnamed)'} polling pool {pool!r} at {url}")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)  # the worker replaces this process: signals reach it directly


@scale_app.command()
@_one_line_errors
def deploy(
    campaign_file: Annotated[Path, typer.Argument(help="Campaign YAML file.")],
    pool: PoolOption = DEFAULT_POOL,
    database: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Campaign database every worker reaches (PostgreSQL across hosts; default "
            "$CRUCIBLE_DATABASE_URL or sqlite:///RUNS_DIR/crucible.db).",
        ),
    ] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where the default SQLite database goes.")] = Path(
        "runs"
    ),
    mode: Annotated[
        str,
        typer.Option(
            help="distributed: each experiment a flow run on any worker; "
            "single: the whole campaign in one worker process."
        ),
    ] = "distributed",
    parallel: Annotated[int, typer.Option(help="Experiments under way at once (distributed).")] = 2,
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete an earlier campaign of the same name.")] = False,
    run: Annotated[bool, typer.Option("--run", help="Start the campaign now (a worker of POOL picks it up).")] = False,
    api_url: ApiUrlOption = None,
) -> None:
    """Register CAMPAIGN_FILE's deployments on POOL; with --run, start the campaign."""
    from flows.deploy import deploy_campaign, start_campaign_run
    from orchestrator.spec import load_campaign

    spec = load_campaign(campaign_file)
    if parallel < 1:
        raise ScaleError(f"--parallel must be at least 1, not {parallel}")
    url = _api_url(api_url)
    _check_server(url)
    database_url = database or os.environ.get("CRUCIBLE_DATABASE_URL") or f"sqlite:///{runs_dir / 'crucible.db'}"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    deployed = deploy_campaign(spec, database_url, pool, mode=mode, parallel=parallel, fresh=fresh)  # type: ignore[arg-type]
    console.print(
        f"deployed {deployed.campaign_deployment} on pool {pool!r}"
        + (
            f" (experiments: {deployed.experiment_deployment}, {parallel} at once)"
            if deployed.experiment_deployment
            else ""
        )
    )
    console.print(f"campaign database: {deployed.database_url}", soft_wrap=True, highlight=False)
    if deployed.database_url.startswith("sqlite"):
        console.print(
            "[yellow]a SQLite campaign database serves workers on this machine only; "
            "use PostgreSQL (--db postgresql+psycopg2://HOST/DB) for workers on other hosts[/]",
            soft_wrap=True,
        )
    if run:
        flow_run = start_campaign_run(deployed.campaign_deployment, spec.name)
        console.print(f"started flow run {flow_run.name}, id {flow_run.id}", highlight=False)
    else:
        console.print(
            f"start it with: prefect deployment run '{deployed.campaign_deployment}'  (or deploy again with --run);"
            " running it again later resumes the campaign",
            soft_wrap=True,
        )


if __name__ == "__main__":
    scale_app()
