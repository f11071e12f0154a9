"""``tongban devices idcard``: probe, read, watch, simulate the ID card reader."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from devices.config import load_devices_config
from devices.idcard.cards import load_card, sample_names
from devices.idcard.reader import CardRead, IdCardReader, ReaderConfig
from devices.idcard.simulator import Fault, VirtualReader
from devices.idcard.watcher import CardInserted, CardWatcher
from tongban.output import emit, to_json_text

CARD_TYPE_ZH = {
    "resident": "居民身份证",
    "hk_macao_taiwan": "港澳台居民居住证",
    "foreign_permanent_2017": "外国人永久居留身份证 (2017)",
    "foreign_permanent_2023": "外国人永久居留身份证 (2023)",
}


def _reader_config(ctx: click.Context, port: str | None, baud: int | None) -> ReaderConfig:
    state = ctx.find_object(dict) or {}
    config_path: Path | None = state.get("config")
    config = load_devices_config(config_path).idcard
    updates: dict[str, Any] = {}
    if port:
        updates["port"] = port
    if baud:
        updates["baud"] = baud
    config = ReaderConfig.model_validate({**config.model_dump(), **updates})
    if config.port is None:
        raise click.UsageError("no port: pass --port (see `tongban devices list`) or set "
                               "idcard.port in the config file")
    return config


port_option = click.option("--port", "-p", metavar="PORT",
                           help="Serial port, e.g. /dev/ttyUSB0 (default: idcard.port).")
baud_option = click.option("--baud", type=click.Choice(["115200", "57600", "38400", "19200",
                                                        "9600"]),
                           callback=lambda _c, _p, v: int(v) if v else None,
                           help="Line rate the reader is at now (default 115200).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file with an [idcard] section (a kiosk's config file works).")
@click.pass_context
def idcard(ctx: click.Context, config_path: Path | None) -> None:
    """The second-generation ID card reader (GA 467 serial protocol).

    \b
    Typical session of a technician:
      tongban devices list                      find the port
      tongban devices idcard probe -p PORT      is the SAM alive? which SAM?
      tongban devices idcard read -p PORT       read the card lying on it
      tongban devices idcard watch -p PORT      lay cards on and off, see events
    Without hardware:
      tongban devices idcard simulate --card resident   (prints a port to use)

    Personal fields are masked in output unless --unmask is given.
    """
    ctx.ensure_object(dict)["config"] = config_path


@idcard.command()
@port_option
@baud_option
@json_option
@click.pass_context
def probe(ctx: click.Context, port: str | None, baud: int | None, as_json: bool) -> None:
    """SAM status and SAM ID: is the reader alive and which security module is in it."""
    config = _reader_config(ctx, port, baud)

    async def run() -> dict[str, Any]:
        async with IdCardReader(config, decoder_from_config=False) as reader:
            await reader.sam_status()
            sam = await reader.sam_id()
            return {"port": reader.port, "baud": reader.baud, "sam_status": "ok",
                    "sam_id": str(sam)}

    result = asyncio.run(run())
    if as_json:
        emit(result, as_json=True)
    else:
        click.echo(f"port        {result['port']} at {result['baud']} baud")
        click.echo("SAM status  ok (self-test passed)")
        click.echo(f"SAM ID      {result['sam_id']}")


def _print_card(read: CardRead, unmask: bool) -> None:
    data = read.to_json(unmask=unmask)
    rows = [("card type", f"{data['card_type']} ({CARD_TYPE_ZH[data['card_type']]})"),
            ("name", data["name"])]
    for key, label in (("english_name", "English name"), ("chinese_name", "Chinese name"),
                       ("nationality", "nationality")):
        if data.get(key):
            rows.append((label, data[key]))
    rows.append(("gender", data["gender"]))
    if data.get("nation"):
        rows.append(("nation", data["nation"]))
    rows.append(("birth date", data["birth_date"] or "?"))
    if data.get("address"):
        rows.append(("address", data["address"]))
    valid = {True: "check passed", False: "CHECK FAILED", None: "no check"}
    rows.append(("ID number", f"{data['id_number']}  ({valid[data['id_number_valid']]})"))
    if data.get("travel_permit_number"):
        rows.append(("permit no.", f"{data['travel_permit_number']} (issue "
                                   f"{data['issue_count']})"))
    if data.get("issuer"):
        rows.append(("issuer", data["issuer"]))
    until = "长期 (long-term)" if data["valid_long_term"] else (data["valid_to"] or "?")
    rows.append(("valid", f"{data['valid_from'] or '?'} to {until}"))
    photo = data["photo"]
    if photo["decoded"]:
        how = f"decoded by {photo['decoder']}" + (" (SIMULATED)" if photo["simulated"] else "")
    else:
        how = f"not decoded: {photo['reason']}"
    rows.append(("photo", f"{photo['format']}, {photo['bytes']} bytes, {how}"))
    if data["fingerprints"] is not None:
        fps = ", ".join(f"{f['finger']} (quality {f['quality']})" for f in data["fingerprints"])
        rows.append(("fingerprints", fps or "none enrolled"))
    t = data["timings"]
    rows.append(("timings", f"find {t['find_ms']} ms, select {t['select_ms']} ms, "
                            f"read {t['read_ms']} ms, total {t['total_ms']} ms"))
    rows.append(("warnings", "; ".join(data["warnings"]) or "none"))
    for label, value in rows:
        click.echo(f"{label:<13} {value}")
    if data["masked"]:
        click.echo("(personal fields masked; --unmask shows them)")


@idcard.command()
@port_option
@baud_option
@json_option
@click.option("--fingerprint", is_flag=True, help="Also read fingerprint templates (30 10).")
@click.option("--address", "newest_address", is_flag=True,
              help="Also read the newest added address (30 03).")
@click.option("--unmask", is_flag=True, help="Show name, ID number and address in full.")
@click.option("--save-photo", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the decoded photo as BMP (or the raw WLT block if not decoded).")
@click.pass_context
def read(ctx: click.Context, port: str | None, baud: int | None, as_json: bool,
         fingerprint: bool, newest_address: bool, unmask: bool,
         save_photo: Path | None) -> None:
    """Read the card lying on the reader once (find, select, read base info).

    JSON fields: card_type, name, gender, nation, birth_date, address, id_number, issuer,
    valid_from, valid_to, id_number_valid, warnings, the card type's own fields, photo
    {format, bytes, sha256, decoded}, timings {find_ms, select_ms, read_ms, total_ms}.
    """
    config = _reader_config(ctx, port, baud)

    async def run() -> tuple[CardRead, str | None]:
        async with IdCardReader(config) as reader:
            result = await reader.read_card(fingerprint=fingerprint)
            extra = await reader.read_newest_address() if newest_address else None
            return result, extra

    result, extra = asyncio.run(run())
    if save_photo is not None:
        blob = (result.decoded_photo.to_bmp() if result.decoded_photo else result.photo_wlt)
        save_photo.write_bytes(blob)
    if as_json:
        data = result.to_json(unmask=unmask)
        if newest_address:
            data["newest_address"] = extra if (unmask or extra is None) else extra[:6] + "…"
        emit(data, as_json=True)
    else:
        _print_card(result, unmask)
        if newest_address:
            shown = extra if (unmask or extra is None) else extra[:6] + "…"
            click.echo(f"{'new address':<13} {shown or 'none on the card'}")


@idcard.command()
@port_option
@baud_option
@json_option
@click.option("--fingerprint", is_flag=True, help="Read fingerprint templates too.")
@click.option("--unmask", is_flag=True, help="Show personal fields in full.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--seconds", type=click.FloatRange(min=0.1), help="Stop after this long.")
@click.pass_context
def watch(ctx: click.Context, port: str | None, baud: int | None, as_json: bool,
          fingerprint: bool, unmask: bool, count: int | None, seconds: float | None) -> None:
    """Print reader events until interrupted: card-inserted (with the card), card-removed,
    read-failed, reader-fault, device-lost, device-restored.

    A card is read once each time it is laid on; an unplugged reader is reopened every
    second (idcard.reopen_interval). With --json, one JSON object per line.
    """
    config = _reader_config(ctx, port, baud)

    async def run() -> None:
        reader = IdCardReader(config)
        seen = 0
        try:
            async for event in CardWatcher(reader, fingerprint=fingerprint).events():
                if as_json:
                    click.echo(to_json_text(event.to_json(unmask=unmask), line=True))
                elif isinstance(event, CardInserted):
                    c = event.read.to_json(unmask=unmask)
                    click.echo(f"card-inserted  {c['card_type']} {c['name']} {c['id_number']} "
                               f"({event.read.timings.total_ms:.0f} ms)")
                else:
                    msg = event.to_json().get("message")
                    click.echo(f"{event.kind}" + (f"  {msg}" if msg else ""))
                sys.stdout.flush()
                seen += 1
                if count is not None and seen >= count:
                    return
        finally:
            await reader.aclose()

    try:
        asyncio.run(asyncio.wait_for(run(), seconds) if seconds else run())
    except TimeoutError:
        pass
    except KeyboardInterrupt:
        pass


@idcard.command()
@port_option
@baud_option
@click.argument("rate", type=click.Choice(["115200", "57600", "38400", "19200", "9600"]))
@click.pass_context
def baud(ctx: click.Context, port: str | None, baud: int | None, rate: str) -> None:
    """Switch the reader's line rate to RATE (command 60 pp); talk at --baud now."""
    config = _reader_config(ctx, port, baud)

    async def run() -> None:
        async with IdCardReader(config, decoder_from_config=False) as reader:
            await reader.set_baud_rate(int(rate))
            await reader.sam_status()

    asyncio.run(run())
    click.echo(f"reader now at {rate} baud (set idcard.baud = {rate} in the config)")


@idcard.command()
@json_option
def samples(as_json: bool) -> None:
    """The SIMULATED sample cards (fictional people), for `simulate --card NAME`."""
    rows = [{"name": n, "card_type": load_card(n).card_type.value, "label": load_card(n).label}
            for n in sample_names()]
    if as_json:
        emit(rows, as_json=True)
        return
    for r in rows:
        click.echo(f"{r['name']:<24} {r['card_type']:<24} {r['label']}")


SIM_HELP = ("commands: insert [CARD] | remove | fault NAME [TIMES|always] | clear | unplug | "
            "replug | status | quit")


@idcard.command()
@click.option("--card", "card_spec", metavar="CARD",
              help="Card on the reader at start: a JSON file or a sample name "
                   "(`tongban devices idcard samples`). Default: no card.")
@click.option("--link", type=click.Path(dir_okay=False, path_type=Path),
              help="Also make this symlink to the port (a stable name across replugs).")
@click.option("--baud", "line_baud", type=click.Choice(["115200", "57600", "38400", "19200",
                                                        "9600"]), default="115200",
              show_default=True, help="Line rate to pace replies at.")
@click.option("--no-pace", is_flag=True, help="Reply at once instead of at wire speed.")
@click.option("--reread", type=click.Choice(["must-leave", "stays"]), default="must-leave",
              show_default=True,
              help="must-leave: a card already read is not found until re-laid (the spec); "
                   "stays: it is found again at every poll.")
@click.option("--processing-ms", type=click.FloatRange(min=0), default=0.0,
              help="Extra delay before each reply, like a real SAM's work.")
@click.option("--fault", "faults", multiple=True, metavar="NAME[:TIMES]",
              help=f"Inject a fault at start ({', '.join(f.value for f in Fault)}).")
@json_option
def simulate(card_spec: str | None, link: Path | None, line_baud: str, no_pace: bool,
             reread: str, processing_ms: float, faults: tuple[str, ...], as_json: bool) -> None:
    """Serve a SIMULATED reader on a pty pair until stopped; print the port to use.

    The first line of output is the port path (with --json, an object with "path").
    Then type commands on stdin (one per line):

    \b
      insert [CARD]          lay a card (default: the --card one) on the reader
      remove                 take it off
      fault NAME [TIMES]     inject a fault into the next TIMES replies (or 'always')
      clear                  clear all faults
      unplug / replug        make the port vanish / come back (as a USB unplug)
      status                 what the reader holds and has served
      quit                   stop

    Without a terminal on stdin it serves until SIGINT or SIGTERM.
    """
    card = load_card(card_spec) if card_spec else None
    sim = VirtualReader(card, baud=int(line_baud), pace=not no_pace, link=link,
                        reread="stays" if reread == "stays" else "must-leave",
                        processing_ms=processing_ms)
    for spec in faults:
        name, _, times = spec.partition(":")
        try:
            sim.inject(Fault(name), None if times == "always" else int(times or 1))
        except ValueError:
            raise click.BadParameter(f"unknown fault {spec!r}", param_hint="--fault") from None
    path = sim.start()
    info = {"path": path, "simulated": True, "baud": int(line_baud),
            "card": card.label if card else None}
    click.echo(to_json_text(info, line=True) if as_json else path)
    sys.stdout.flush()
    click.echo(f"SIMULATED ID card reader on {path}. {SIM_HELP}", err=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())

    def commands_from_stdin() -> None:
        for line in sys.stdin:
            try:
                if _sim_command(sim, line.split(), card):
                    break
            except (ValueError, OSError) as exc:
                click.echo(f"error: {exc}", err=True)
        else:
            if sys.stdin.isatty():
                done.set()
            return
        done.set()

    if sys.stdin is not None and not sys.stdin.closed:
        threading.Thread(target=commands_from_stdin, daemon=True).start()
    while not done.wait(0.5):
        pass
    sim.stop()


def _sim_command(sim: VirtualReader, words: list[str], default_card: Any) -> bool:
    """Run one simulator console command; True means quit."""
    if not words:
        return False
    cmd, args = words[0], words[1:]
    if cmd == "quit":
        return True
    if cmd == "insert":
        card = load_card(args[0]) if args else default_card
        if card is None:
            raise ValueError("insert needs a card: insert CARD")
        sim.insert(card)
    elif cmd == "remove":
        sim.remove()
    elif cmd == "fault":
        if not args:
            raise ValueError(f"fault needs a name: {', '.join(f.value for f in Fault)}")
        times = None if args[1:] == ["always"] else int(args[1]) if args[1:] else 1
        sim.inject(Fault(args[0]), times)
    elif cmd == "clear":
        sim.clear_faults()
    elif cmd == "unplug":
        sim.unplug()
    elif cmd == "replug":
        sim.replug()
    elif cmd == "status":
        pass
    else:
        raise ValueError(f"unknown command {cmd!r}; {SIM_HELP}")
    click.echo(f"ok {cmd}: card {'present' if sim.card_present else 'absent'}, "
               f"{sim.stats.requests} requests served", err=True)
    return False
