"""``tongban devices``: the technician's commands for every kiosk device."""

from __future__ import annotations

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


devices.add_command(idcard)
devices.add_command(scanner)
