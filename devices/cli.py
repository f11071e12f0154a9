"""``tongban devices``: the technician's commands for every kiosk device."""

from __future__ import annotations

from pathlib import Path

import click

from devices.idcard.cli import idcard
from devices.scanner.cli import scanner
from devices.serialports import list_serial_ports
from tongban.output import emit


@click.group()
def devices() -> None:
    """Probe, read, watch and simulate the kiosk's devices (no kiosk needs to run).

    \b
    Start with `tongban devices list` to find the reader's port, then
    `tongban devices idcard probe --port PORT`. Every device has a simulator:
    `tongban devices idcard simulate --card resident` prints a port to use instead.
    """


@devices.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of ports.")
@click.option("--all", "include_all", is_flag=True,
              help="Also legacy ports with no hardware behind them (ttyS*).")
def list_cmd(as_json: bool, include_all: bool) -> None:
    """Serial ports with their USB VID:PID and description."""
    ports = list_serial_ports(include_all)
    if as_json:
        emit([p.to_json() for p in ports], as_json=True)
        return
    if not ports:
        click.echo("no serial ports found (is the reader plugged in? try --all)")
        return
    for p in ports:
        line = f"{p.device:<24} {p.vid_pid or '-':<10} {p.description}"
        if p.remark:
            line += f"  [{p.remark}]"
        click.echo(line)


@devices.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The kiosk's TOML file ([idcard], [scanner.camera], [face.camera], "
                   "[kiosk] hub_url, desk_url, stun, turn, spool_dir).")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of checks.")
def doctor(config_path: Path | None, as_json: bool) -> None:
    """Check every configured device, the hub, the desk, each STUN/TURN server, the clock
    and the disk: one verdict per line (ok, warn, fail, skip); exit 1 if anything fails."""
    import asyncio

    from devices.doctor import DoctorConfig, exit_code, run_checks
    from tongban.config import load_config

    config = load_config(DoctorConfig, config_path)
    checks = asyncio.run(run_checks(config))
    if as_json:
        emit([c.to_json() for c in checks], as_json=True)
    else:
        for c in checks:
            click.echo(f"{c.verdict.upper():<5} {c.name:<12} {c.detail}"
                       + (f"  ({c.ms:.0f} ms)" if c.ms >= 1 else ""))
    code = exit_code(checks)
    if code:
        failed = ", ".join(c.name for c in checks if c.verdict == "fail")
        click.echo(f"error: failed: {failed}", err=True)
        raise SystemExit(code)


devices.add_command(idcard)
devices.add_command(scanner)
