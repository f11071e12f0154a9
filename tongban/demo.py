"""``tongban demo``: run what exists on this machine with every device SIMULATED.

Today that is the ID card reader: a virtual reader on a pty pair holding a fictional sample
card, read by the real driver through the pty, once per sample card type. Later components
(hub, desk, kiosk) join the demo as they are built.
"""

from __future__ import annotations

import asyncio
from typing import Any

import click

from devices.idcard.cards import load_card, sample_names
from devices.idcard.photo import SimulatedPhotoDecoder
from devices.idcard.reader import IdCardReader, ReaderConfig
from devices.idcard.simulator import VirtualReader
from tongban.output import emit


async def _read_samples(names: list[str]) -> list[dict[str, Any]]:
    results = []
    with VirtualReader(reread="stays") as sim:
        config = ReaderConfig(port=sim.path)
        async with IdCardReader(config, SimulatedPhotoDecoder()) as reader:
            await reader.sam_status()
            sam = str(await reader.sam_id())
            for name in names:
                sim.insert(load_card(name))
                read = await reader.read_card()
                sim.remove()
                results.append({"sample": name, "sam_id": sam, **read.to_json()})
    return results


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--card", "cards", multiple=True, metavar="NAME",
              help="Sample card(s) to read (default: all; see `tongban devices idcard samples`).")
def demo(as_json: bool, cards: tuple[str, ...]) -> None:
    """Run tongban on this machine with every device SIMULATED.

    Now: a virtual ID card reader on a pseudo-terminal holds each fictional sample card in
    turn, and the real serial driver reads it at 115200 baud wire speed. Nothing leaves this
    machine; nothing personal is real.
    """
    names = list(cards) or sample_names()
    for name in names:
        load_card(name)  # a bad name fails before anything starts
    results = asyncio.run(_read_samples(names))
    if as_json:
        emit({"ok": True, "simulated": True, "reads": results}, as_json=True)
        return
    click.echo("tongban demo: SIMULATED ID card reader on a pty, real driver, fictional cards")
    for r in results:
        t = r["timings"]
        valid = "valid" if r["id_number_valid"] else "NOT VALID"
        click.echo(f"  {r['sample']:<24} {r['card_type']:<24} {r['name']:<8} "
                   f"{r['id_number']:<20} {valid:<9} photo: "
                   f"{'SIMULATED' if r['photo']['simulated'] else r['photo']['format']}  "
                   f"{t['total_ms']:.0f} ms")
    click.echo("Personal fields are masked. Try: tongban devices idcard simulate --card resident")
