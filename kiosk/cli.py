"""``tongban kiosk``: run a kiosk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kiosk.config import KioskConfig, load_kiosk_config
from tongban.errors import ConfigError
from tongban.output import emit
from tongban.serving import StopSignal, run_service


@click.group()
def kiosk() -> None:
    """The kiosk service (township self-service terminal).

    \b
      tongban kiosk run --config /etc/tongban/kiosk.toml
      tongban kiosk run --config kiosk.toml --check --json    (validate, then exit)

    The touch screen is served on the loopback address only (kiosk.screen_port, 8700): point
    the full-screen browser at http://127.0.0.1:8700/. Diagnose devices and the network with
    `tongban devices doctor --config F`.
    """


def _summary(config: KioskConfig) -> dict[str, Any]:
    k = config.kiosk
    return {"kiosk_id": k.kiosk_id, "hub_url": k.hub_url, "desk_url": k.desk_url,
            "desks": k.desks, "screen": f"http://{k.screen_host}:{k.screen_port}/",
            "idcard_port": config.idcard.port, "face_camera": config.face.camera.source,
            "document_camera": config.scanner.camera.source,
            "spool_dir": str(k.spool_dir), "work_dir": str(k.work_dir)}


def _check(config: KioskConfig) -> None:
    k = config.kiosk
    if not k.hub_url:
        raise ConfigError("config error: kiosk.hub_url is not set")
    if not (k.desk_url or k.desks):
        raise ConfigError("config error: set kiosk.desk_url or kiosk.desks")
    if config.idcard.port is None:
        raise ConfigError("config error: idcard.port is not set (the reader's serial device)")
    if not k.key_file.is_file():
        raise ConfigError(f"config error: kiosk.key_file {k.key_file} does not exist")


async def _run(config: KioskConfig, signals: StopSignal) -> None:
    from devices.facecam import FaceCamera
    from devices.idcard.reader import IdCardReader
    from devices.scanner.camera import DocumentCamera
    from kiosk.catalogue import load_catalogue
    from kiosk.service import Devices, KioskService
    from signaling.auth import load_private_key

    devices = Devices(IdCardReader(config.idcard), FaceCamera(config.face.camera),
                      DocumentCamera(config.scanner.camera))
    service = KioskService(config, load_catalogue(config.kiosk.catalogue),
                           load_private_key(config.kiosk.key_file), devices)
    try:
        # the start waits up to 10 s for a hub that does not answer: a stop need not
        if await signals.unless_stopped(service.start()):
            click.echo(f"kiosk {config.kiosk.kiosk_id}: touch screen at "
                       f"{service.screen_url}", err=True)
            await signals.stop.wait()
    finally:
        await service.stop()


@kiosk.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="The kiosk's TOML file ([kiosk], [idcard], [scanner], "
                                  "[face]); TONGBAN_SECTION__KEY variables override it.")
@click.option("--check", is_flag=True, help="Validate the config and exit.")
@click.option("--json", "as_json", is_flag=True, help="With --check: print what was read.")
def run(config_path: Path, check: bool, as_json: bool) -> None:
    """Run the kiosk: touch screen, devices, queue, call, upload, wipe.

    At start the spool and work folder are wiped (the previous run's key is gone). Stops on
    Ctrl-C or SIGTERM, wiping the session it was in.
    """
    config = load_kiosk_config(config_path)
    _check(config)
    if check:
        summary = _summary(config)
        if as_json:
            emit({"ok": True, **summary}, as_json=True)
        else:
            for key, value in summary.items():
                click.echo(f"{key:<16} {value}")
        return
    run_service("kiosk", lambda signals: _run(config, signals))
