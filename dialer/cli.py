"""The `obzvon` command line.

Each command is a thin shell: it parses options, calls one function of the package that owns
the work, and turns that package's errors into a message and an exit code. Imports are local to
each command so that `obzvon --help` stays fast and a missing optional piece breaks only its own
command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The engine's matrices are small (a pacing decision's tables are tens to hundreds wide): a
# multithreaded BLAS only adds hand-offs between threads, and on a loaded two-core machine one
# table took 30 times longer with them. Read by numpy when it is first imported, below.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from dialer.config import Settings

err = Console(stderr=True)


def _host_port(value: str, *, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint=option)
    return host, int(port)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="obzvon")
def main() -> None:
    """obzvon: predictive dialer and skill-based ACD for order confirmation."""


@main.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check_config_cmd(file: Path) -> None:
    """Validate FILE and report every problem at once (exit code 2 if any)."""
    from dialer.config import check_config

    problems = check_config(file)
    if problems:
        for problem in problems:
            err.print(f"[red]✗[/red] {escape(problem)}", highlight=False)
        err.print(f"{file}: {len(problems)} problem(s)")
        sys.exit(2)
    click.echo(f"{file}: OK")


@main.group("db")
def db_group() -> None:
    """Database schema management."""


@db_group.command("upgrade")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--url", help="Database URL (overrides the config file).")
def db_upgrade_cmd(config_path: Path | None, url: str | None) -> None:
    """Bring the database schema up to date (creates it if empty)."""
    from dialer.storage.errors import StorageError
    from dialer.storage.migrate import upgrade

    settings = _settings_or_exit(config_path)
    target = url or settings.database.url
    try:
        upgrade(target)
    except StorageError as exc:
        err.print(f"[red]✗[/red] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    click.echo("database schema is up to date")


def _settings_or_exit(config_path: Path | None) -> Settings:
    from dialer.config import ConfigError, load_settings

    try:
        return load_settings(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(f"[red]✗[/red] {escape(problem)}", highlight=False)
        sys.exit(2)


@main.group("outbox")
def outbox_group() -> None:
    """What waits to go to the CRM, and what the CRM refused (dead letters)."""


@outbox_group.command("dead")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--limit", default=50, show_default=True)
def outbox_dead_cmd(config_path: Path | None, limit: int) -> None:
    """List messages the CRM refused, newest first, with the CRM's own reason."""
    import asyncio

    from rich.table import Table

    from dialer.outbox_admin import dead_letters
    from dialer.storage.db import Database

    settings = _settings_or_exit(config_path)

    async def fetch() -> list[Any]:
        async with Database(settings.database.url) as db:
            return list(await dead_letters(db, limit=limit))

    rows = asyncio.run(fetch())
    table = Table("id", "order", "kind", "crm", "external id", "attempts", "error")
    for d in rows:
        table.add_row(
            str(d.id), str(d.order_id), d.kind, d.crm or "", d.external_id or "",
            str(d.attempts), escape(d.error or ""),
        )  # fmt: skip
    Console().print(table)
    click.echo(f"{len(rows)} dead letter(s)")


@outbox_group.command("requeue")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("ids", nargs=-1, type=int, required=True)
def outbox_requeue_cmd(config_path: Path | None, ids: tuple[int, ...]) -> None:
    """Send dead letters again (after fixing what the CRM refused)."""
    import asyncio
    from datetime import UTC, datetime

    from dialer.outbox_admin import requeue
    from dialer.storage.db import Database

    settings = _settings_or_exit(config_path)

    async def run() -> int:
        async with Database(settings.database.url) as db:
            return await requeue(db, ids, now=datetime.now(UTC))

    click.echo(f"{asyncio.run(run())} message(s) queued again")


@main.command("sim")
@click.option("--listen", default="127.0.0.1:5038", show_default=True, help="HOST:PORT.")
@click.option("--user", default="obzvon", show_default=True)
@click.option("--secret", default="obzvon", show_default=True)
@click.option(
    "--time-scale", default=1.0, show_default=True, help="Simulated seconds per real second."
)
@click.option("--seed", default=None, type=int, help="Seed for the call model.")
def sim_cmd(listen: str, user: str, secret: str, time_scale: float, seed: int | None) -> None:
    """Run the AMI-speaking Asterisk simulator standalone."""
    import asyncio

    from pbx.sim.server import serve_forever

    host, port = _host_port(listen, option="--listen")
    try:
        asyncio.run(
            serve_forever(
                host=host, port=port, user=user, secret=secret, time_scale=time_scale, seed=seed
            )
        )
    except KeyboardInterrupt:
        pass


@main.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
def run_cmd(config_path: Path | None) -> None:
    """Run the dialer daemon (SIGTERM drains: no new calls, live calls finish)."""
    import asyncio
    import logging

    from dialer.app import run_daemon

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = _settings_or_exit(config_path)
    asyncio.run(run_daemon(settings))


@main.command("demo")
@click.option("--for", "seconds", type=float, default=None, help="Run this many wall seconds.")
@click.option("--json", "as_json", is_flag=True, help="Headless; print a JSON summary last.")
@click.option("--http", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to serve.")
@click.option("--time-scale", default=20.0, show_default=True, help="Simulated s per wall s.")
@click.option("--operators", default=12, show_default=True)
@click.option("--orders-per-day", default=1140.0, show_default=True)
@click.option("--seed", default=1, show_default=True)
def demo_cmd(
    seconds: float | None,
    as_json: bool,
    http: str,
    time_scale: float,
    operators: int,
    orders_per_day: float,
    seed: int,
) -> None:
    """The whole loop on embedded defaults: SQLite, the simulator, simulated shop and operators."""
    from dialer.demo import main as demo_main

    _host_port(http, option="--http")
    demo_main(
        seconds=seconds,
        as_json=as_json,
        http=http,
        scale=time_scale,
        operators=operators,
        per_day=orders_per_day,
        seed=seed,
    )


@main.group("fraud")
def fraud_group() -> None:
    """The base of phone numbers that did not collect parcels (prepayment only)."""


@fraud_group.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("var/fraud_base.npy"),
    show_default=True,
    help="Where to save the compact base the daemon loads.",
)
@click.option("--region", default="RU", show_default=True, help="Default region of the numbers.")
def fraud_load_cmd(file: Path, out: Path, region: str) -> None:
    """Load a CSV of phone numbers (one per line, or the first column) into the fraud base."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from crm_bridge import CrmBridgeError
    from crm_bridge.intake.fraud import load_fraud_csv

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("reading", total=file.stat().st_size)
        try:
            base = load_fraud_csv(
                file,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                default_region=region,
            )
        except CrmBridgeError as exc:
            err.print(f"[red]✗[/red] {escape(str(exc))}", highlight=False)
            sys.exit(2)
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = base.save(out)
    stats = base.stats()
    click.echo(
        f"{stats.numbers:,} numbers kept, {stats.skipped_lines:,} lines skipped; saved to {saved}"
    )


def _register_benchmarks() -> None:
    # `obzvon bench pacing|routing` and `obzvon plan` live with the simulator in benchmarks/
    from benchmarks.bench_cli import bench, plan

    main.add_command(bench)
    main.add_command(plan)


_register_benchmarks()
