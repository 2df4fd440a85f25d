"""The ``crucible`` command line: run, resume, watch and report campaigns.

The CLI is the top of the stack: it reads the campaign file, optionally starts the simulated lab (``--sim``), and runs
the Prefect flow of :mod:`flows.campaign`. Every expected failure (a bad campaign file, a silent instrument) ends
in one line on stderr naming the problem and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from flows.export_cli import export
from flows.scale_cli import scale_app

if TYPE_CHECKING:  # the commands import what they use: `crucible --help` loads neither torch nor pymatgen
    from orchestrator.campaign import Campaign, CampaignEvent
    from orchestrator.spec import CampaignSpec

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Crucible: autonomous self-driving-lab campaigns.")
app.add_typer(scale_app)  # crucible server | worker | deploy: scale-out on Prefect's server, pools and workers
console = Console()
errors = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            console.print(f"crucible {version('crucible-lab')}", highlight=False)
        except PackageNotFoundError:
            console.print("crucible (not installed: run from a source tree)", highlight=False)
        raise typer.Exit()


@app.callback()
def _crucible(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print Crucible's version and exit."),
    ] = False,
) -> None:
    """Crucible: autonomous self-driving-lab campaigns."""


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of a table.")]


def _json_value(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _experiment_json(spec: CampaignSpec, experiment: Any) -> dict[str, Any]:
    from orchestrator.outcomes import is_feasible, measured

    names = [o.name for o in spec.objectives] + [c.name for c in spec.constraints]
    return {
        "experiment": experiment.index,
        "status": experiment.status,
        "conditions": {k: _json_value(v) for k, v in experiment.conditions.items()},
        "outcomes": {
            n: {k: _json_value(v) for k, v in measured(spec, experiment.outcomes or {}, n).items()} for n in names
        },
        "feasible": bool(experiment.outcomes) and is_feasible(spec, experiment.outcomes),
        "failure": experiment.failure_reason,
        "marked_bad": experiment.excluded_reason,
    }


DEFAULT_RUNS_DIR = Path("runs")
#: Failures a user can act on, printed as one line: (module, class), looked up only in modules already imported
#: (an error of a module no command loaded cannot have been raised).
EXPECTED_ERRORS = (
    ("orchestrator.spec", "CampaignFileError"),
    ("orchestrator.outcomes", "CampaignError"),
    ("instruments.errors", "InstrumentError"),
    ("orchestrator.simulated_lab", "SimulatedLabError"),
    ("analysis.readers", "PatternFileError"),
    ("orchestrator.store", "StoreError"),
)


def _loaded(names: tuple[tuple[str, str], ...]) -> tuple[type[BaseException], ...]:
    return tuple(getattr(sys.modules[module], name) for module, name in names if module in sys.modules)


F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(function: F) -> F:
    """Turn expected failures into ``error: ...`` on stderr and exit status 1."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            if isinstance(error, _loaded(EXPECTED_ERRORS)):
                message = " ".join(str(error).split())
            elif isinstance(error, _loaded((("sqlalchemy.exc", "DatabaseError"),))):
                # the database broke (or locked up) after it opened: its own words, no SQL
                message = " ".join(f"database: {getattr(error, 'orig', None) or error}".split())
            else:
                raise
            errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            errors.print("interrupted; resume with `crucible resume NAME`")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _database_url(database: str | None, runs_dir: Path) -> str:
    return database or os.environ.get("CRUCIBLE_DATABASE_URL") or f"sqlite:///{runs_dir / 'crucible.db'}"


def _quiet_prefect(verbose: bool) -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        # gpytorch rounds fixed noise below 1e-6 up to 1e-6 and warns each time; precise fits do that routinely.
        warnings.filterwarnings("ignore", message="Very small noise values detected")
        # While every experiment violates a constraint, BoTorch suggests another acquisition function; the
        # planner already switches by itself, and the advice is noise to a scientist watching the campaign.
        warnings.filterwarnings("ignore", message="When all training points are infeasible")
        # The campaign's INFO records still reach the flow run's Logs tab in the Prefect UI (the API handler);
        # only the terminal copy is held back to warnings, next to the CLI's own progress lines.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
        os.environ.setdefault("PREFECT_LOGGING_SERVER_LEVEL", "WARNING")


DatabaseOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: sqlite:///RUNS_DIR/crucible.db or $CRUCIBLE_DATABASE_URL)."),
]
SimOption = Annotated[bool, typer.Option("--sim", help="Start the simulated lab of the `simulation:` section.")]
RunsDirOption = Annotated[Path, typer.Option("--runs-dir", help="Where the database, sample tray and plots go.")]


@contextmanager
def _one_runner(url: str, name: str) -> Iterator[None]:
    """Hold the campaign's runner lock (refused with one line if another process runs it)."""
    from orchestrator.runner_lock import RunnerLock
    from orchestrator.store import Store

    store = Store(url)
    try:
        with RunnerLock(store, name):
            yield
    finally:
        store.close()


@contextmanager
def _lab_for(spec: CampaignSpec, sim: bool, runs_dir: Path) -> Iterator[None]:
    from orchestrator.simulated_lab import SimulatedLab

    if sim:
        with SimulatedLab(spec, runs_dir / "tray" / spec.name):
            console.print(
                f"simulated lab up: scenario [bold]{spec.simulation.scenario}[/], "  # type: ignore[union-attr]
                f"{len(spec.instruments)} instrument servers"
            )
            yield
    else:
        yield


def _interrupt_on_sigterm() -> None:
    """SIGTERM ends the command as Ctrl-C does: context managers run, so the simulated lab's servers stop too."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _run(spec: CampaignSpec, url: str, runs_dir: Path, sim: bool, fresh: bool, resume: bool, verbose: bool) -> None:
    from orchestrator.campaign import check_instruments_free
    from orchestrator.lab import Lab
    from orchestrator.store import Store

    _quiet_prefect(verbose)
    _interrupt_on_sigterm()
    with _lab_for(spec, sim, runs_dir):
        with Lab.from_spec(spec) as lab:
            described = lab.check()  # one clear error for a silent address, before Prefect starts
            store = Store(url)
            try:
                check_instruments_free(spec, lab, store)  # and for an instrument leased by someone else
            finally:
                store.close()
        console.print("instruments: " + ", ".join(f"{name} ({d.get('kind', '?')})" for name, d in described.items()))
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from flows.campaign import campaign_flow, observing

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        ) as progress:
            store = Store(url)
            stored = None if fresh else store.campaign_by_name(spec.name)
            recorded = store.experiments(stored.id) if stored else []
            store.close()
            total = (stored.budget_experiments if stored else None) or spec.budget.experiments
            bar = progress.add_task(spec.name, total=total)
            progress.update(bar, completed=sum(e.status in ("analysed", "failed") for e in recorded))

            def show(event: CampaignEvent) -> None:
                tag = {
                    "planned": "cyan",
                    "ran": "blue",
                    "analysed": "green",
                    "failed": "red",
                    "retried": "yellow",
                }
                colour = tag.get(event.kind, "white")
                line = f"  [{colour}]{event.kind:>9}[/] #{event.experiment_index:03d} {escape(event.message)}"
                progress.console.print(line, highlight=False)
                if event.budget:
                    progress.update(bar, total=event.budget)  # `crucible budget` while the campaign runs
                if event.kind in ("analysed", "failed"):
                    progress.advance(bar)

            with observing(show):
                state = campaign_flow(
                    spec.name, spec.model_dump(mode="json"), url, fresh=fresh, resume=resume, return_state=True
                )
    if state.is_cancelled():
        _summarise(spec, url, runs_dir, paused=True)
        console.print(f"[yellow]{escape(state.message or 'campaign paused')}[/]")
        return
    state.result()  # a failed flow run raises what failed it
    _summarise(spec, url, runs_dir)


def _summarise(spec: CampaignSpec, url: str, runs_dir: Path, paused: bool = False) -> None:
    """The experiment table, the best result (so far, if ``paused``), its score against truth, and the plot."""
    from orchestrator.campaign import is_feasible, objective_value
    from orchestrator.report import closed_loop_line, experiment_table, plot_best_so_far
    from orchestrator.store import Store

    store = Store(url)
    record = store.campaign_by_name(spec.name)
    assert record is not None
    experiments = store.experiments(record.id)
    proposals = store.proposals(record.id)
    store.close()
    console.print(experiment_table(spec, experiments, proposals))
    console.print(closed_loop_line(spec, experiments, proposals), highlight=False)
    objective = spec.objectives[0]
    counted = [e for e in experiments if e.status == "analysed" and e.excluded_reason is None]
    feasible = [e for e in counted if is_feasible(spec, e.outcomes)]
    best = max(feasible, key=lambda e: objective_value(spec, e.outcomes)) if feasible else None
    failed = sum(e.status == "failed" for e in experiments)
    rejected = sum(e.status == "rejected" for e in experiments)
    console.print(
        f"experiments: {len(experiments) - rejected} ({failed} failed"
        + (f", {rejected} more rejected" if rejected else "")
        + f"); database: {url}"
    )
    true_values = true_optimum = None
    if spec.planner.mode == "explore":
        console.print(
            f"explore mode: {len(counted)} points measured to map {', '.join(o.name for o in spec.objectives)} "
            "(no best value is sought)"
        )
        best = None
    elif best is None:
        console.print("[yellow]no experiment met every constraint yet[/]")
    else:
        from orchestrator.campaign import measured as measured_value

        measured = measured_value(spec, best.outcomes, objective.name)
        console.print(
            f"[bold]{'best so far' if paused else 'best conditions found'}[/] (experiment {best.index}): "
            + ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in best.conditions.items())
        )
        console.print(f"  measured {objective.name} = {measured['value']:.4g} ± {measured['std']:.2g}")
    if spec.simulation is not None and objective.direction != "target" and spec.planner.mode != "explore":
        from orchestrator.simulated_lab import truth_scores

        true_values, optimum_conditions, true_optimum = truth_scores(spec, [e.conditions for e in experiments])
        console.print(
            "[bold]ground-truth optimum[/]: "
            + ", ".join(f"{k} = {v:.4g}" for k, v in optimum_conditions.items())
            + f" -> {objective.name} = {true_optimum:.4g}"
        )
        if best is not None:
            true_at_best = true_values[best.index]
            if math.isnan(true_at_best):
                console.print("  [yellow]the best measured conditions violate a constraint in truth[/]")
            else:
                gap = abs(true_optimum - true_at_best)
                console.print(
                    f"  true {objective.name} at the best conditions = {true_at_best:.4g}; "
                    f"gap to optimum = {gap:.4g} ({100 * gap / abs(true_optimum):.1f} %)"
                )
    plot = plot_best_so_far(
        spec, experiments, runs_dir / f"{spec.name}-best-so-far.png", true_values, true_optimum, proposals
    )
    console.print(f"plot: {plot}")
    from orchestrator.views import plot_pareto_front, plot_share_map

    for view in (
        plot_pareto_front(spec, experiments, runs_dir / f"{spec.name}-pareto-front.png"),
        plot_share_map(spec, experiments, runs_dir / f"{spec.name}-phase-map.png"),
    ):
        if view is not None:
            console.print(f"plot: {view}")


@app.command()
@_one_line_errors
def run(
    campaign_file: Annotated[Path, typer.Argument(help="Campaign YAML file.")],
    sim: SimOption = False,
    database: DatabaseOption = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    fresh: Annotated[bool, typer.Option("--fresh", help="Replace an earlier campaign of the same name.")] = False,
    update: Annotated[
        bool,
        typer.Option(
            "--update",
            help="Continue the campaign of the same name under this edited file (new bounds, budget, fixed "
            "values, ...), keeping every experiment.",
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs.")] = False,
) -> None:
    """Run the campaign in CAMPAIGN_FILE until its budget is spent."""
    from orchestrator.campaign import check_can_open, revise_campaign
    from orchestrator.outcomes import CampaignError
    from orchestrator.simulated_lab import check_simulation
    from orchestrator.spec import load_campaign
    from orchestrator.store import Store

    spec = load_campaign(campaign_file)
    if sim:
        check_simulation(spec)  # an unknown scenario is named before anything is opened or started
    url = _database_url(database, runs_dir)
    if update and fresh:
        raise CampaignError("--update keeps the campaign's experiments and --fresh deletes them: choose one")
    with _one_runner(url, spec.name):  # before anything is checked, changed or started
        store = Store(url)
        try:
            if update:
                changed = revise_campaign(store, spec)
            else:
                check_can_open(spec, store, fresh=fresh)  # before the lab and the flow start
        finally:
            store.close()
        if update:
            console.print(f"campaign {spec.name} continues under {campaign_file}; changed: {', '.join(changed) or '-'}")
        _run(spec, url, runs_dir, sim, fresh, update, verbose)


@app.command()
@_one_line_errors
def resume(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    sim: SimOption = False,
    database: DatabaseOption = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs.")] = False,
) -> None:
    """Continue an interrupted or paused campaign: nothing recorded is lost, nothing is run twice."""
    url = _database_url(database, runs_dir)
    spec = _stored_spec(name, url)
    with _one_runner(url, name):
        campaign = _operate(name, database, runs_dir)
        try:
            if campaign.finished():
                console.print(
                    f"campaign {name} is finished: {len(campaign.experiments())} experiments, its whole budget of "
                    f"{campaign.budget}; raise it with `crucible budget {name} N` to continue"
                )
                return
        finally:
            campaign.store.close()
        _run(spec, url, runs_dir, sim, False, True, verbose)


def _stored_spec(name: str, url: str) -> CampaignSpec:
    from orchestrator.outcomes import CampaignError
    from orchestrator.spec import parse_campaign
    from orchestrator.store import Store

    store = Store(url)
    record = store.campaign_by_name(name)
    store.close()
    if record is None:
        raise CampaignError(f"no campaign named {name!r} in {url}")
    return parse_campaign(json.loads(record.spec_json), f"campaign {name!r} in {url}")


@app.command()
@_one_line_errors
def status(
    name: Annotated[str | None, typer.Argument(help="Campaign name (default: list all).")] = None,
    database: DatabaseOption = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    as_json: JsonOption = False,
) -> None:
    """List campaigns with their state, or show one campaign's experiments and its state."""
    from orchestrator.report import experiment_table, state_line
    from orchestrator.spec import parse_campaign
    from orchestrator.store import Store

    url = _database_url(database, runs_dir)
    if name is None:
        store = Store(url)
        try:
            listed = []
            for record in store.campaigns():
                spec = parse_campaign(json.loads(record.spec_json), f"campaign {record.name!r} in {url}")
                line = state_line(record, spec, store.experiments(record.id))
                listed.append({"campaign": record.name, "status": record.status, "state": line})
                if not as_json:
                    console.print(escape(line), highlight=False)
        finally:
            store.close()
        if as_json:
            print(json.dumps(listed, indent=2))
        return
    spec = _stored_spec(name, url)
    store = Store(url)
    try:
        record = store.campaign_by_name(name)
        assert record is not None
        experiments = store.experiments(record.id)
        if as_json:
            state = {"campaign": name, "status": record.status, "state": state_line(record, spec, experiments)}
            print(json.dumps({**state, "experiments": [_experiment_json(spec, e) for e in experiments]}, indent=2))
            return
        console.print(experiment_table(spec, experiments, store.proposals(record.id)))
        console.print(escape(state_line(record, spec, experiments)), highlight=False)
    finally:
        store.close()


@app.command()
@_one_line_errors
def report(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    database: DatabaseOption = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    as_json: JsonOption = False,
) -> None:
    """Print the campaign's table and best result and write its best-so-far plot (with truth if simulated)."""
    url = _database_url(database, runs_dir)
    if as_json:
        print(json.dumps(_report_json(_stored_spec(name, url), url), indent=2))
        return
    _summarise(_stored_spec(name, url), url, runs_dir)


def _report_json(spec: CampaignSpec, url: str) -> dict[str, Any]:
    """The campaign's best feasible experiment (single objective) or its Pareto set, as data."""
    from orchestrator.outcomes import counts, is_feasible, non_dominated, objective_value
    from orchestrator.store import Store

    store = Store(url)
    try:
        record = store.campaign_by_name(spec.name)
        assert record is not None
        experiments = store.experiments(record.id)
    finally:
        store.close()
    feasible = [e for e in experiments if counts(e) and is_feasible(spec, e.outcomes)]
    out: dict[str, Any] = {
        "campaign": spec.name,
        "status": record.status,
        "experiments": sum(e.status != "rejected" for e in experiments),
        "failed": sum(e.status == "failed" for e in experiments),
        "objectives": [{"name": o.name, "direction": o.direction, "target": o.target} for o in spec.objectives],
        "database": url,
    }
    if len(spec.objectives) == 1:
        scored = [e for e in feasible if math.isfinite(objective_value(spec, e.outcomes))]
        best = max(scored, key=lambda e: objective_value(spec, e.outcomes)) if scored else None
        out["best"] = None if best is None else _experiment_json(spec, best)
    else:
        out["pareto_front"] = [_experiment_json(spec, e) for e in non_dominated(spec, feasible)]
    return out


def _operate(name: str, database: str | None, runs_dir: Path) -> Campaign:
    """The stored campaign ``name``, for an operator's command (no instrument is contacted)."""
    from orchestrator.campaign import Campaign
    from orchestrator.lab import Lab
    from orchestrator.store import Store

    url = _database_url(database, runs_dir)
    spec = _stored_spec(name, url)
    store = Store(url)
    record = store.campaign_by_name(name)
    assert record is not None
    return Campaign(spec, store, Lab({}), record)


@app.command()
@_one_line_errors
def pause(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    database: DatabaseOption = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
) -> None:
    """Pause a campaign: no new experiment starts; what is on an instrument finishes. `crucible resume` continues."""
    _operate(name, database, runs_dir).pause()
    console.print(f"campaign {name} paused")


@app.command()
@_one_line_errors
def approve(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    indices: Annotated[list[int] | None, typer.Argument(help="Experiment numbers (default: all awaiting).")] = None,
    database: DatabaseOption = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
) -> None:
    """Approve planned experiments of a campaign that requires approval, so instruments may run them."""
    approved = _operate(name, database, runs_dir).approve(indices or None)
    console.print(f"approved experiments {approved}" if approved else "no experiment was awaiting approval")


@app.command()
@_one_line_errors
def reject(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    indices: Annotated[list[int] | None, typer.Argument(help="Experiment numbers (default: all awaiting).")] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why they should not run (kept on record).")] = (
        "rejected by an operator"
    ),
    database: DatabaseOption = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
) -> None:
    """Refuse planned experiments awaiting approval: they never run, cost no budget, and the planner proposes others."""
    rejected = _operate(name, database, runs_dir).reject(indices or None, reason)
    console.print(f"rejected experiments {rejected}: {reason}" if rejected else "no experiment was awaiting approval")


@app.command()
@_one_line_errors
def budget(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    experiments: Annotated[int, typer.Argument(help="The new total number of experiments.")],
    database: DatabaseOption = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
) -> None:
    """Change a campaign's budget, also while it runs."""
    _operate(name, database, runs_dir).set_budget(experiments)
    console.print(f"campaign {name}: budget is now {experiments} experiments")


@app.command("mark-bad")
@_one_line_errors
def mark_bad(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    index: Annotated[int, typer.Argument(help="Experiment number.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept on record).")] = "marked bad by an operator",
    database: DatabaseOption = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
) -> None:
    """Mark an experiment bad after the fact: it stays on record, the planner forgets it."""
    _operate(name, database, runs_dir).mark_bad(index, reason)
    console.print(f"experiment {index} of {name} marked bad: {reason}")


@app.command()
@_one_line_errors
def keys(
    names: Annotated[list[str], typer.Argument(help="Key pair names, e.g. orchestrator xrd-1 viewer.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the key files.")] = Path("keys"),
) -> None:
    """Generate CurveZMQ key pairs (NAME.key public, NAME.key_secret private) for instruments and clients."""
    from instruments.keys import generate_keypair
    from orchestrator.outcomes import CampaignError

    for name in names:
        try:
            public, secret = generate_keypair(directory, name)
        except (ValueError, FileExistsError) as error:
            raise CampaignError(f"key pair {name!r}: {error}") from None
        console.print(f"{name}: public {public}, secret {secret} (keep the secret file on its own host)")


ClientKeyOption = Annotated[
    Path | None,
    typer.Option("--client-key", help="This client's CurveZMQ .key_secret file, for a secured --address."),
]
ServerKeyOption = Annotated[
    Path | None, typer.Option("--server-key", help="The secured instrument's public .key file (with --address).")
]


def _targets(
    campaign_file: Path | None,
    all_instruments: bool,
    address: list[str] | None,
    client_key: Path | None,
    server_key: Path | None,
    verb: str,
) -> dict[str, Any]:
    """The instruments a `stop` or `reset` acts on, address -> CurveZMQ keys (None: plain): those given with
    --address (secured with --client-key/--server-key), and with --all every one of the campaign file's, with the
    keys the file names (read without checking its CIFs or plug-ins, which an emergency must not wait for)."""
    from instruments.security import ClientSecurity
    from orchestrator.outcomes import CampaignError
    from orchestrator.spec import load_campaign

    def keys(client: str | Path | None, server: str | Path | None, where: str) -> ClientSecurity | None:
        if client is None and server is None:
            return None
        if client is None or server is None:
            raise CampaignError(f"{where}: give both --client-key and --server-key for a secured instrument")
        try:
            return ClientSecurity.from_key_files(client, server)
        except (OSError, ValueError) as error:
            raise CampaignError(f"{where}: cannot load CurveZMQ keys: {error}") from None

    targets: dict[str, Any] = {}
    for target in address or []:
        targets[target] = keys(client_key, server_key, target)
    if campaign_file is not None:
        if not all_instruments and not targets:
            raise CampaignError(f"give --all to {verb} every instrument of the campaign file, or --address")
        spec = load_campaign(campaign_file, resources=False)
        for name, instrument in spec.instruments.items():
            client = spec.client_key if instrument.server_key is not None else None
            targets[instrument.address] = keys(client, instrument.server_key, f"instrument {name!r}")
    elif client_key is not None or server_key is not None:
        if not address:
            raise CampaignError("--client-key and --server-key go with --address")
    if not targets:
        raise CampaignError(f"nothing to {verb}: give a campaign file with --all, or --address ADDRESS")
    return targets


@app.command()
@_one_line_errors
def stop(
    campaign_file: Annotated[Path | None, typer.Argument(help="Campaign file whose instruments to stop.")] = None,
    all_instruments: Annotated[bool, typer.Option("--all", help="Stop every instrument of the campaign file.")] = False,
    address: Annotated[list[str] | None, typer.Option("--address", help="An instrument address (repeatable).")] = None,
    client_key: ClientKeyOption = None,
    server_key: ServerKeyOption = None,
    timeout_s: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each instrument.")] = 2.0,
) -> None:
    """Emergency stop: halt instruments at once, even those leased by a running campaign."""
    from instruments.emergency import stop_all

    targets = _targets(campaign_file, all_instruments, address, client_key, server_key, "stop")
    results = stop_all(list(targets), timeout_s=timeout_s, security=targets)
    for target, error in results.items():
        console.print(f"{target}: {'stopped' if error is None else f'NOT confirmed ({error})'}")
    if any(error is not None for error in results.values()):
        raise typer.Exit(2)


@app.command()
@_one_line_errors
def reset(
    campaign_file: Annotated[Path | None, typer.Argument(help="Campaign file whose instruments to reset.")] = None,
    all_instruments: Annotated[bool, typer.Option("--all", help="Reset every instrument of the file.")] = False,
    address: Annotated[list[str] | None, typer.Option("--address", help="An instrument address (repeatable).")] = None,
    client_key: ClientKeyOption = None,
    server_key: ServerKeyOption = None,
    timeout_s: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each instrument.")] = 2.0,
) -> None:
    """Clear an emergency stop, so the instruments accept jobs again (`crucible resume` then continues)."""
    from instruments.client import InstrumentClient
    from instruments.errors import InstrumentError as WireError

    targets = _targets(campaign_file, all_instruments, address, client_key, server_key, "reset")
    failed = False
    for target, security in targets.items():
        try:
            with InstrumentClient(target, timeout_s=timeout_s, retries=0, security=security) as client:
                client.reset()
            console.print(f"{target}: reset")
        except (WireError, ValueError) as error:
            failed = True
            console.print(f"{target}: NOT reset ({error})")
    if failed:
        raise typer.Exit(2)


@app.command()
@_one_line_errors
def train(
    scenario: Annotated[str, typer.Argument(help="Simulated scenario to generate training patterns from.")],
    out: Annotated[Path, typer.Option("--out", help="Where the model card and weights go.")] = Path("analysis/weights"),
    n_patterns: Annotated[int, typer.Option("--n-patterns", help="Simulated training patterns.")] = 8000,
    epochs: Annotated[int, typer.Option("--epochs", help="Training passes over the patterns.")] = 24,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the patterns and the networks.")] = 0,
    members: Annotated[int, typer.Option("--members", help="Networks in the deep ensemble.")] = 5,
) -> None:
    """Generate patterns with the simulated lab and train the phase-quantification network ensemble on them."""
    from flows.training import train as train_ensemble

    train_ensemble(scenario, out, n_patterns, epochs, seed, members, log=console.print)


@app.command()
@_one_line_errors
def analyse(
    pattern_file: Annotated[Path, typer.Argument(help="Powder pattern: .xy, .xye, .csv, .dat, .txt or .xrdml.")],
    analysis: Annotated[
        str, typer.Option("--analysis", "-a", help="fit (whole-pattern fit), network (trained ensemble) or identify.")
    ] = "fit",
    phase: Annotated[
        list[str] | None,
        typer.Option("--phase", "-p", help="Reference phase: a built-in name or a CIF file; repeat for several."),
    ] = None,
    radiation: Annotated[
        str | None,
        typer.Option("--radiation", "-r", help="Overrides the file's: Cu, Cu-Ka1, Mo, 1.5406 or λ1,λ2[,ratio] (Å)."),
    ] = None,
    model: Annotated[str, typer.Option("--model", help="Shipped ensemble name or model-card path.")] = (
        "tio2_calcination"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the quantities as JSON.")] = False,
    instrument: Annotated[
        str | None,
        typer.Option("--instrument", help="Instrument profile for the fit: a JSON file or a shipped name (aeris)."),
    ] = None,
) -> None:
    """Analyse one measured pattern file on its own: phase fractions, lattices and sizes with uncertainties."""
    from agents.analysis_agents import ANALYSES, analyse_file
    from analysis.readers import PatternFileError

    if analysis not in ANALYSES:
        raise PatternFileError(f"unknown analysis {analysis!r}; choose one of {', '.join(ANALYSES)}")
    for name in phase or ():
        if name.lower().endswith(".cif") and not Path(name).exists():
            raise PatternFileError(f"phase file {name}: no such file")
    phases = [Path(name) if name.lower().endswith(".cif") else name for name in phase or ("anatase", "rutile")]
    try:
        report = analyse_file(pattern_file, analysis, radiation, phases, model, instrument)
    except PatternFileError:
        raise  # already names the file
    except (KeyError, ValueError, OSError) as error:  # an unknown built-in phase or model, a pattern the fit cannot use
        raise PatternFileError(f"{pattern_file}: {error}") from None
    warnings = list(report.warnings)
    if not phase and analysis != "network":
        warnings.insert(0, "no --phase given: fitted the default anatase + rutile; name the phases the sample holds")
    if as_json:
        console.print_json(json.dumps({**report.as_dict(), "warnings": warnings}))
        return
    console.print(f"{pattern_file} ({analysis}, agent {report.agent})")
    for name, measurement in report.quantities.items():
        console.print(f"  {name:<36} {measurement.value:>12.5g} ± {measurement.std:.2g}", highlight=False)
    for warning in warnings:
        console.print(f"  warning: {escape(warning)}", highlight=False)


@app.command("sim")
@_one_line_errors
def serve_simulated_lab(
    campaign_file: Annotated[Path, typer.Argument(help="Campaign YAML file with a `simulation:` section.")],
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
) -> None:
    """Serve the simulated lab of CAMPAIGN_FILE at its instrument addresses until Ctrl-C or SIGTERM."""
    import signal
    import threading

    from orchestrator.simulated_lab import SimulatedLab
    from orchestrator.spec import load_campaign

    spec = load_campaign(campaign_file)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    with SimulatedLab(spec, runs_dir / "tray" / spec.name) as lab:
        for name, process in lab.processes.items():
            console.print(f"{name}: pid {process.pid} at {spec.instruments[name].address}")
        console.print("simulated lab running; Ctrl-C to stop")
        # the lab's watchdog restarts a server that dies; this waits for the operator (or a supervisor's SIGTERM)
        while not done.wait(0.5):
            pass
    console.print("simulated lab stopped")
    sys.exit(0)


app.command("export")(_one_line_errors(export))  # flows.export_cli: pandas loads only when the command runs


def main() -> None:
    app()


if __name__ == "__main__":
    main()
