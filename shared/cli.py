"""``community``: run the platform, serve a service, migrate, event catalogue, dead letters."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from shared.settings import SERVICE_PORTS

app = typer.Typer(help="The community marketing platform.", no_args_is_help=True)
events_app = typer.Typer(help="The event catalogue.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-letter topics.", no_args_is_help=True)
settings_app = typer.Typer(help="The settings of every service.", no_args_is_help=True)
app.add_typer(events_app, name="events")
app.add_typer(dlq_app, name="dlq")
app.add_typer(settings_app, name="settings")
console = Console()

SERVICE_NAMES = tuple(SERVICE_PORTS)
GATEWAY_PORT = SERVICE_PORTS["gateway"]


def _service_module(name: str, module: str) -> Any:
    if name not in SERVICE_NAMES:
        raise typer.BadParameter(f"unknown service {name!r}; one of {', '.join(SERVICE_NAMES)}")
    return importlib.import_module(f"services.{name}.{module}")


def _settings(name: str) -> Any:
    module = _service_module(name, "settings")
    cls = next(
        v for k, v in vars(module).items() if k.endswith("Settings") and k != "ServiceSettings"
    )
    return cls()


@app.command()
def serve(service: Annotated[str, typer.Argument(help="Which service to run.")]) -> None:
    """Run one service (what each container runs)."""
    import uvicorn

    from shared.app import configure_process_logging, shutdown_budget

    # Uvicorn drains on SIGTERM, then re-raises the signal to this handler: a finished
    # graceful stop exits 0 (a SIGTERM before uvicorn started has nothing to drain).
    signal.signal(signal.SIGTERM, _exit_cleanly)
    settings = _settings(service)
    configure_process_logging(settings)
    application = _service_module(service, "app").create_app(settings)
    drain_s, _ = shutdown_budget(settings)
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        # In-flight requests get this long; the lifespan stop gets the rest of the grace.
        timeout_graceful_shutdown=max(1, int(drain_s)),
    )


def _exit_cleanly(signum: int, _frame: object) -> None:
    raise SystemExit(0)


@app.command()
def migrate(service: Annotated[str, typer.Argument(help="A service, or 'all'.")] = "all") -> None:
    """Apply database migrations (what the Kubernetes migration Job runs)."""
    from shared.db import Database
    from shared.migrations import upgrade

    names = SERVICE_NAMES if service == "all" else (service,)

    async def run() -> None:
        for name in names:
            settings = _settings(name)
            if settings.database_url.startswith("sqlite"):
                # Only SQLite needs the folder; containers have a read-only root filesystem.
                settings.data_dir.mkdir(parents=True, exist_ok=True)
            db = Database(settings.database_url)
            try:
                await upgrade(db, Path(_service_module(name, "app").MIGRATIONS))
            finally:
                await db.dispose()
            console.print(f"[green]migrated[/green] {name}")

    asyncio.run(run())


@app.command()
def run(
    data_dir: Annotated[Path, typer.Option(help="Where SQLite files and logs go.")] = Path("data"),
    port: Annotated[int, typer.Option(envvar="GATEWAY_PORT", help="Gateway port.")] = GATEWAY_PORT,
    free_ports: Annotated[
        bool, typer.Option(help="Pick free ports for the services behind the gateway.")
    ] = False,
    demo: Annotated[
        bool, typer.Option(help="Fill the platform with demo data once it is up.")
    ] = False,
) -> None:
    """Run everything locally: broker, services, gateway. Ctrl-C stops it all."""
    from shared.runner import Platform
    from shared.settings import LOCAL_ADMIN_PASSWORD

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
    platform = Platform(
        data_dir, gateway_port=port, bootstrap_servers=bootstrap, free_ports=free_ports
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with console.status("starting broker and services..."):
        try:
            platform.start()
        except Exception as exc:
            platform.stop()
            console.print(f"[red]failed to start:[/red] {exc}")
            raise typer.Exit(1) from exc
    password = os.environ.get("COMMUNITY_ADMIN_PASSWORD", LOCAL_ADMIN_PASSWORD)
    console.print(f"[bold green]Community platform is up[/bold green] (data in {data_dir}/)")
    console.print(f"  gateway   {platform.gateway_url}")
    console.print(f"  API docs  {platform.gateway_url}/docs")
    console.print(f"  events    {platform.gateway_url}/v1/events/catalog")
    console.print(f"  broker    {platform.bootstrap_servers}")
    console.print(f"  operator  username [bold]admin[/bold], password [bold]{password}[/bold]")
    if demo:
        _fill_with_demo(platform.gateway_url, seed=7, members=2000, active=200)
    console.print("Ctrl-C to stop.")
    try:
        while not stop.wait(1.0):
            for name, process in list(platform.processes.items()):
                if process.poll() is not None:
                    console.print(f"[red]{name} exited ({process.returncode}); stopping[/red]")
                    stop.set()
    finally:
        with console.status("stopping..."):
            platform.stop()
        console.print("stopped.")


@events_app.command("catalog")
def events_catalog(
    write: Annotated[bool, typer.Option(help="Write docs/events/asyncapi.json.")] = False,
) -> None:
    """Print (or write) the AsyncAPI catalogue of every event type."""
    from shared.events.catalog import CATALOG_PATH, render_catalog

    text = render_catalog()
    if write:
        CATALOG_PATH.parent.mkdir(parents=True, exist_ok=True)
        CATALOG_PATH.write_text(text)
        console.print(f"wrote {CATALOG_PATH}")
    else:
        sys.stdout.write(text)


@settings_app.command("doc")
def settings_doc(
    write: Annotated[bool, typer.Option(help="Write docs/configuration.md.")] = False,
) -> None:
    """Print (or write) the table of every setting, generated from the settings classes."""
    from shared.settings_doc import CONFIGURATION_PATH, render_configuration

    text = render_configuration()
    if write:
        CONFIGURATION_PATH.parent.mkdir(parents=True, exist_ok=True)
        CONFIGURATION_PATH.write_text(text)
        console.print(f"wrote {CONFIGURATION_PATH}")
    else:
        sys.stdout.write(text)


@dlq_app.command("replay")
def dlq_replay(
    group: Annotated[str, typer.Argument(help="The consumer group (service) whose dead letters.")],
    limit: Annotated[int | None, typer.Option(help="At most this many.")] = None,
) -> None:
    """Re-publish a group's dead letters to their original topics."""
    from shared.consumer import replay_dead_letters

    count = asyncio.run(replay_dead_letters(_settings(group), group, limit=limit))
    console.print(f"replayed {count} dead letter(s) of {group}")


if __name__ == "__main__":
    app()


def _fill_with_demo(url: str, *, seed: int, members: int, active: int) -> None:
    from rich.progress import Progress

    from shared.demo import run_demo
    from shared.settings import LOCAL_ADMIN_PASSWORD

    password = os.environ.get("COMMUNITY_ADMIN_PASSWORD", LOCAL_ADMIN_PASSWORD)
    with Progress(console=console) as progress:
        report = asyncio.run(
            run_demo(url, seed=seed, members=members, active=active,
                     admin=("admin", password), progress=progress)
        )  # fmt: skip
    console.print(f"[green]demo data written:[/green] {report}")


@app.command("demo")
def demo_command(
    url: Annotated[str, typer.Option(help="Gateway URL of a running platform.")] = (
        f"http://127.0.0.1:{GATEWAY_PORT}"
    ),
    seed: Annotated[int, typer.Option(help="Same seed, same community.")] = 7,
    members: Annotated[int, typer.Option(min=10, help="How many members to register.")] = 2000,
    active: Annotated[int, typer.Option(min=5, help="How many of them sign in and post.")] = 200,
) -> None:
    """Fill a running platform with a believable brand community through its public API."""
    _fill_with_demo(url, seed=seed, members=members, active=active)


analytics_app = typer.Typer(help="Analytics operations.", no_args_is_help=True)
app.add_typer(analytics_app, name="analytics")


@analytics_app.command("rebuild")
def analytics_rebuild(
    url: Annotated[str, typer.Option(help="Gateway (or analytics service) URL.")] = (
        f"http://127.0.0.1:{GATEWAY_PORT}"
    ),
    token: Annotated[
        str | None,
        typer.Option(envvar="COMMUNITY_TOKEN", help="An operator's bearer token."),
    ] = None,
    username: Annotated[str, typer.Option(help="Operator to sign in as without --token.")] = (
        "admin"
    ),
    password: Annotated[
        str | None, typer.Option(envvar="COMMUNITY_ADMIN_PASSWORD", help="Their password.")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=5000, help="Events replayed per transaction.")
    ] = 500,
    force: Annotated[
        bool, typer.Option(help="Rebuild even if the rollups hold events the store lacks.")
    ] = False,
    poll_s: Annotated[float, typer.Option(min=0.05, help="Seconds between progress polls.")] = 0.5,
) -> None:
    """Rebuild the analytics rollups from the raw event store, showing its progress."""
    import time

    import httpx
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from shared.settings import LOCAL_ADMIN_PASSWORD

    def fail(response: httpx.Response) -> None:
        try:
            detail = response.json().get("detail") or response.text
        except ValueError:
            detail = response.text
        console.print(f"[red]{response.status_code}[/red] {detail}")
        raise typer.Exit(1)

    with httpx.Client(base_url=url, timeout=30.0) as client:
        if token is None:
            signed_in = client.post(
                "/v1/auth/token",
                data={"username": username, "password": password or LOCAL_ADMIN_PASSWORD},
            )
            if signed_in.status_code != 200:
                fail(signed_in)
            token = signed_in.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        started = client.post(
            "/v1/metrics/rebuilds",
            json={"batch_size": batch_size, "force": force},
            headers=headers,
        )
        if started.status_code != 202:
            fail(started)
        rebuild = started.json()
        columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
            bar = progress.add_task("rebuilding rollups", total=rebuild["events_total"])
            while True:
                progress.update(bar, completed=rebuild["events_done"])
                if rebuild["state"] != "running":
                    break
                time.sleep(poll_s)
                polled = client.get(f"/v1/metrics/rebuilds/{rebuild['id']}", headers=headers)
                if polled.status_code != 200:
                    fail(polled)
                rebuild = polled.json()
    if rebuild["state"] != "succeeded":
        console.print(f"[red]rebuild {rebuild['id']} failed:[/red] {rebuild['error']}")
        raise typer.Exit(1)
    console.print(
        f"[green]rebuilt[/green] the rollups from {rebuild['events_done']} events "
        f"(rebuild {rebuild['id']})"
    )
