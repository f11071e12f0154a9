"""``tongban signaling``: serve the hub; manage kiosk and desk credentials."""

from __future__ import annotations

import os
from pathlib import Path

import click
from pydantic import BaseModel, ConfigDict, Field

from signaling.auth import CredentialStore, load_private_key, make_token, private_key_pem
from signaling.hub import HubConfig, serve
from signaling.protocol import ClientKind
from tongban.config import load_config
from tongban.output import emit
from tongban.serving import run_service


class HubSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    hub: HubConfig = Field(default_factory=HubConfig)


def _load(config_path: Path | None) -> HubConfig:
    return load_config(HubSettings, config_path).hub


@click.group()
def signaling() -> None:
    """The regional signaling hub: queues, routing, call set-up between kiosks and desks.

    \b
      tongban signaling credentials create --kind desk --id yongjia-desk --centre yongjia \\
          --key-out /etc/tongban/desk.key
      tongban signaling credentials create --kind kiosk --id shengze-01 --site shengze \\
          --key-out /etc/tongban/kiosk.key
      tongban signaling serve --config hub.toml [--redis redis://127.0.0.1:6379/0]
    Health: GET /healthz; metrics for Prometheus: GET /metrics.
    """


@signaling.command("serve")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file with a [hub] section.")
@click.option("--redis", help="redis://host:port/db: share state with other hub processes.")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default 8765).")
@click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path),
              help="Credentials file (default hub-credentials.json).")
@click.option("--directory", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Centres, matters and sites (default: the sample directory).")
def serve_cmd(config_path: Path | None, redis: str | None, host: str | None,
              port: int | None, credentials: Path | None, directory: Path | None) -> None:
    """Run one hub process until interrupted (WebSocket only; see README for why)."""
    config = _load(config_path)
    updates = {k: v for k, v in {"redis": redis, "host": host, "port": port,
                                 "credentials": credentials, "directory": directory}.items()
               if v is not None}
    config = config.model_copy(update=updates)
    click.echo(f"tongban hub on http://{config.host}:{config.port} "
               f"({'redis' if config.redis else 'memory'} state)", err=True)
    run_service("hub", lambda signals: serve(config, signals.stop))


@signaling.group()
def credentials() -> None:
    """Create, revoke and list kiosk and desk credentials (Ed25519 keys)."""


creds_option = click.option("--file", "creds_file", type=click.Path(dir_okay=False,
                                                                    path_type=Path),
                            help="Credentials file (default: hub.credentials of --config).")
config_option = click.option("--config", "config_path",
                             type=click.Path(dir_okay=False, path_type=Path))


def _store(config_path: Path | None, creds_file: Path | None) -> CredentialStore:
    return CredentialStore(creds_file or _load(config_path).credentials)


@credentials.command("create")
@click.option("--kind", type=click.Choice(["kiosk", "desk"]), required=True)
@click.option("--id", "client_id", required=True, help="The client's id (e.g. shengze-01).")
@click.option("--site", help="Kiosks: their site (whose ICE servers they use).")
@click.option("--centre", "centres", multiple=True, help="Desks: a centre they serve (repeat).")
@click.option("--key-out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the client's private key (mode 600).")
@creds_option
@config_option
@click.option("--json", "as_json", is_flag=True)
def create(kind: str, client_id: str, site: str | None, centres: tuple[str, ...],
           key_out: Path, creds_file: Path | None, config_path: Path | None,
           as_json: bool) -> None:
    """Register a client and write its private key; the hub keeps only the public key."""
    store = _store(config_path, creds_file)
    try:
        key = store.create(client_id, ClientKind(kind), site=site, centres=list(centres))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    key_out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_pem(key))
    result = {"id": client_id, "kind": kind, "key": str(key_out), "credentials": str(store.path)}
    if as_json:
        emit(result, as_json=True)
    else:
        click.echo(f"created {kind} {client_id}; private key in {key_out} (copy it to the "
                   f"{kind}, then delete it here)")


@credentials.command("revoke")
@click.option("--id", "client_id", required=True)
@creds_option
@config_option
def revoke(client_id: str, creds_file: Path | None, config_path: Path | None) -> None:
    """Revoke a client's credential (every hub cuts its live connection within seconds)."""
    try:
        _store(config_path, creds_file).revoke(client_id)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"revoked {client_id}")


@credentials.command("list")
@creds_option
@config_option
@click.option("--json", "as_json", is_flag=True)
def list_cmd(creds_file: Path | None, config_path: Path | None, as_json: bool) -> None:
    """The registered clients."""
    items = [c.model_dump(mode="json", exclude={"public_key"})
             for c in _store(config_path, creds_file).all()]
    if as_json:
        emit(items, as_json=True)
        return
    for c in items:
        scope = c["site"] or ",".join(c["centres"])
        state = "REVOKED" if c["revoked_at"] else "active"
        click.echo(f"{c['id']:<24} {c['kind']:<6} {scope:<24} {state}")


@signaling.command("token")
@click.option("--id", "client_id", required=True)
@click.option("--kind", type=click.Choice(["kiosk", "desk"]), required=True)
@click.option("--key", "key_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True)
@click.option("--ttl", type=click.IntRange(5, 120), default=60, show_default=True)
def token(client_id: str, kind: str, key_path: Path, ttl: int) -> None:
    """Print one fresh connection token (for diagnosing a client; each works once)."""
    click.echo(make_token(load_private_key(key_path), client_id, ClientKind(kind), ttl=ttl))
