"""The ``tongban`` command: one group per component.

Every command that reports data takes ``--json``. Exit code 0 only on success; a failure is
one line on stderr (a traceback only with ``--debug``).
"""

from __future__ import annotations

import sys
import traceback
from typing import Any, ClassVar

import click

from tongban import logs


class TongbanGroup(click.Group):
    """A group that turns any error into one stderr line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # the one place that reports any failure
            debug = bool(ctx.find_root().params.get("debug"))
            if debug:
                traceback.print_exc()
            code = getattr(exc, "exit_code", None)
            if isinstance(code, int) and code > 0:
                click.echo(f"error: {exc}", err=True)
                ctx.exit(code)
            click.echo(f"internal error: {type(exc).__name__}: {exc}"
                       + ("" if debug else " (run with --debug for the traceback)"), err=True)
            ctx.exit(1)


class LazyGroup(TongbanGroup):
    """Loads component groups on first use, so ``tongban devices`` never imports aiortc."""

    lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "devices": ("devices.cli", "devices"),
        "face": ("kiosk.identity.cli", "face"),
        "kiosk": ("kiosk.cli", "kiosk"),
        "signaling": ("signaling.cli", "signaling"),
        "desk": ("remote_desk.cli", "desk"),
        "demo": ("tongban.demo", "demo"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, attr = self.lazy[cmd_name]
            command: click.Command = getattr(__import__(module, fromlist=[attr]), attr)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Debug logs, and a traceback on failure.")
@click.option("-v", "--verbose", is_flag=True, help="Informational logs and warnings on stderr.")
@click.option("--log-json", is_flag=True, help="Logs as JSON lines (for collectors).")
@click.version_option(package_name="tongban")
def main(debug: bool, verbose: bool, log_json: bool) -> None:
    """tongban: the cross-regional remote service window (跨域通办·云综窗).

    \b
    Components:
      devices   ID card reader, document camera, face camera: probe, read, simulate
      face      person-ID verification: live face against the card photo, liveness
      kiosk     the kiosk service: touch screen, devices, queue, call, upload, wipe
      signaling the regional hub: queues, routing, call set-up, credentials
      desk      the clerks' desk server: accounts, database, audit, serve
      demo      run the whole thing on this machine with every device simulated

    Logs go to stderr and never contain personal data. Exit code 0 means success.
    """
    logs.configure("debug" if debug else "info" if verbose else "error", json=log_json)


def run() -> None:  # pragma: no cover - console entry point alias
    sys.exit(main())
