"""``tongban desk``: serve the desk, manage clerk accounts, upgrade the database, check the
audit chain."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.ext.asyncio import AsyncSession

from remote_desk.config import DeskConfig, load_desk_config
from tongban.output import emit

config_option = click.option("--config", "config_path",
                             type=click.Path(dir_okay=False, path_type=Path),
                             help="TOML file with a [desk] section.")


T = TypeVar("T")


class AuditBroken(Exception):
    exit_code = 51


def _config(config_path: Path | None) -> DeskConfig:
    return load_desk_config(config_path)


def _in_session(config: DeskConfig, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one database session (committed), mapping bad input to a usage error."""
    from remote_desk.db import make_engine, sessions

    async def run() -> T:
        engine = make_engine(config.database)
        try:
            async with sessions(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@click.group()
def desk() -> None:
    """The clerks' desk server at a county (or provincial) service centre.

    \b
      tongban desk db upgrade --config desk.toml          create or migrate the database
      tongban desk user add --config desk.toml --username wang --name 王芳 \\
          --role clerk --centre yongjia                   (password read from stdin)
      tongban desk serve --config desk.toml
      tongban desk audit verify --config desk.toml        is the audit chain intact?
      tongban desk audit anchor --json --config desk.toml  anchor its head now (cron)
    Material files are encrypted with the key in $TONGBAN_DESK_FILES_KEY (desk.files_key_env).
    """


@desk.group()
def db() -> None:
    """The case database (SQLite by default, PostgreSQL by URL)."""


@db.command("upgrade")
@config_option
def db_upgrade(config_path: Path | None) -> None:
    """Create the schema or migrate it to the newest revision (Alembic)."""
    from remote_desk.db import upgrade

    config = _config(config_path)
    upgrade(config.database)
    click.echo(f"database at the newest revision ({config.database.split('://')[0]})")


@desk.group()
def user() -> None:
    """Clerk, supervisor, auditor and admin accounts."""


@user.command("add")
@config_option
@click.option("--username", required=True)
@click.option("--name", "display_name", required=True, help="Name shown to colleagues.")
@click.option("--role", type=click.Choice(["clerk", "supervisor", "auditor", "admin"]),
              required=True)
@click.option("--centre", "centres", multiple=True, required=True,
              help="A centre this user belongs to (repeat for several).")
def user_add(config_path: Path | None, username: str, display_name: str, role: str,
             centres: tuple[str, ...]) -> None:
    """Add an account; the password is read from stdin (never from the command line)."""
    from remote_desk.users import Role, add_user

    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else \
        click.prompt("password", hide_input=True, confirmation_prompt=True)
    _in_session(_config(config_path), lambda session: add_user(
        session, username, display_name, password, Role(role), list(centres)))
    click.echo(f"added {role} {username} ({', '.join(centres)})")


@user.command("disable")
@config_option
@click.option("--username", required=True)
@click.option("--enable", is_flag=True, help="Enable the account again instead.")
def user_disable(config_path: Path | None, username: str, enable: bool) -> None:
    """Disable (or with --enable, re-enable) an account; a running desk ends its sessions
    within a few seconds (session_check_seconds) and closes their clerk sockets."""
    from remote_desk.users import set_disabled

    _in_session(_config(config_path), lambda session: set_disabled(session, username,
                                                                   not enable))
    click.echo(f"{'enabled' if enable else 'disabled'} {username}")


@desk.group("audit")
def audit_group() -> None:
    """The hash-chained audit trail."""


def _anchor_key(config: DeskConfig, public_key: str | None) -> Ed25519PublicKey | None:
    from remote_desk import audit

    if public_key:
        try:
            return audit.parse_public_key(public_key)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--public-key") from None
    if os.environ.get(config.files_key_env):
        return audit.anchor_key(config.files_key()).public_key()
    return None


@audit_group.command("verify")
@config_option
@click.option("--anchors", "extra", multiple=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Also check this copy of the anchor file (e.g. one kept on another host); "
                   "repeat for several.")
@click.option("--public-key", help="The desk's anchor public key (from `tongban desk audit "
              "public-key`), where the file key is not at hand.")
@click.option("--json", "as_json", is_flag=True)
def audit_verify(config_path: Path | None, extra: tuple[Path, ...], public_key: str | None,
                 as_json: bool) -> None:
    """Walk the audit chain and check it against its signed anchors.

    Exit 51 and name the first broken entry if an entry was edited or removed, the chain was
    rewritten after an anchor, its newest anchored entries were deleted, or an anchor is
    forged. The anchors' signatures are checked with the key derived from the file key
    ($TONGBAN_DESK_FILES_KEY) or --public-key.
    """
    from remote_desk import audit

    config = _config(config_path)
    key = _anchor_key(config, public_key)
    anchors: list[audit.Anchor] = []
    bad: list[int] = []
    for path in (config.anchor_file(), *extra):
        found, lines = audit.AnchorFile(path).read()
        anchors += found
        bad += lines
    check = _in_session(config, lambda session: audit.verify(session, anchors, key,
                                                             bad_lines=bad))
    warnings = list(check.warnings)
    if key is None and anchors:
        warnings.append("the anchors' signatures were not checked (no file key, no "
                        "--public-key)")
    if as_json:
        emit({**check.as_dict(), "warnings": warnings}, as_json=True)
    elif check.ok:
        click.echo(f"audit chain intact: {check.entries} entries, {check.anchors} anchors "
                   f"checked (the newest covers {check.anchored_entries})")
    if not as_json:
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
    if not check.ok:
        raise AuditBroken(f"audit chain broken at entry {check.broken_at}: {check.reason}")


@audit_group.command("anchor")
@config_option
@click.option("--json", "as_json", is_flag=True)
def audit_anchor(config_path: Path | None, as_json: bool) -> None:
    """Anchor the chain's head now (a running desk does this every few seconds by itself;
    use this before a backup or from cron to ship the line to another host)."""
    from remote_desk import audit

    config = _config(config_path)
    file = audit.AnchorFile(config.anchor_file())
    anchorer = audit.Anchorer(file, audit.anchor_key(config.files_key()))
    anchor = _in_session(config, anchorer.anchor)
    if anchor is None:
        raise click.ClickException("the audit chain is empty: nothing to anchor")
    if as_json:
        emit(json.loads(anchor.line()), as_json=True)
    else:
        click.echo(f"anchored {anchor.entries} entries (head {anchor.head_id}) in {file.path}")


@audit_group.command("public-key")
@config_option
def audit_public_key(config_path: Path | None) -> None:
    """Print the public key that checks this desk's anchors (for `verify --public-key`)."""
    from remote_desk import audit

    config = _config(config_path)
    click.echo(audit.public_key_text(audit.anchor_key(config.files_key()).public_key()))


@desk.command("serve")
@config_option
def serve(config_path: Path | None) -> None:
    """Run the desk server until interrupted (run `tongban desk db upgrade` first)."""
    from aiohttp import web

    from remote_desk.app import DeskApp
    from tongban import serving
    from tongban.serving import StopSignal

    config = _config(config_path)
    app = DeskApp(config)
    if config.hub_url and config.desk_id and config.hub_key:
        from remote_desk.hublink import HubLink
        from signaling.auth import load_private_key
        from signaling.client import HubClient
        from signaling.protocol import ClientKind

        client = HubClient(config.hub_url, config.desk_id, ClientKind.DESK,
                           load_private_key(config.hub_key))
        app.hub = HubLink(client, config.centres,
                          browser_grace_s=config.browser_grace_seconds)

        async def connect_hub(_: web.Application) -> None:
            assert app.hub is not None
            await app.hub.start()

        app.app.on_startup.append(connect_hub)
    ssl_context = None
    if config.tls_cert and config.tls_key:
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(config.tls_cert, config.tls_key)
    scheme = "https" if ssl_context else "http"
    click.echo(f"tongban desk on {scheme}://{config.host}:{config.port} "
               f"(centres: {', '.join(config.centres) or 'none'})", err=True)

    async def run(signals: StopSignal) -> None:
        runner = serving.runner(app.app)  # closes the clerks' WebSockets when stopping
        await runner.setup()
        try:
            await web.TCPSite(runner, config.host, config.port,
                              ssl_context=ssl_context).start()
            await signals.stop.wait()
        finally:
            await runner.cleanup()

    serving.run_service("desk", run)
