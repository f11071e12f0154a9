"""Stopping a service: SIGINT and SIGTERM end it within a few seconds with exit code 0 and one
line, and an aiohttp application's long-lived requests (WebSockets, picture streams) are closed
when it shuts down instead of being waited for."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import click
import structlog
from aiohttp import WSCloseCode, web

log = structlog.get_logger("tongban.serving")

SHUTDOWN_TIMEOUT_S = 1.5
"""How long a stopping server waits for an ordinary request still in progress (an upload, a
database write) before cancelling it; aiohttp's default is 60 s, and a client retries."""
SOCKET_CLOSE_S = 2.0
"""How long a WebSocket's closing handshake may take (a browser answers at once)."""
STREAM_GRACE_S = 0.5
"""How long a streaming handler has to notice ``stopping`` before it is cancelled."""
STOP_BOUND_S = 10.0
"""A service whose stop takes longer than this exits anyway, saying so (exit code 1)."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")


class LongLived:
    """The requests of one aiohttp application that stay open (WebSockets, streamed
    responses): at the application's shutdown, before aiohttp waits for its handlers, every
    WebSocket is closed as "going away" and every streamed response is ended."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        """Set when the application shuts down: a streaming handler ends its response."""
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self._streams: weakref.WeakKeyDictionary[web.StreamResponse, asyncio.Task[object]] = \
            weakref.WeakKeyDictionary()

    async def _prepared(self, request: web.Request, response: web.StreamResponse) -> None:
        del request
        if isinstance(response, web.WebSocketResponse):
            self._sockets.add(response)
        elif type(response) is web.StreamResponse:  # written as it goes, not a whole body
            task = asyncio.current_task()
            if task is not None:
                self._streams[response] = task

    async def _shutdown(self, app: web.Application) -> None:
        del app
        self.stopping.set()
        sockets = [ws for ws in self._sockets if not ws.closed]
        streams = [task for task in self._streams.values() if not task.done()]
        if sockets or streams:
            log.info("server.closing_long_lived", websockets=len(sockets), streams=len(streams))
        await asyncio.gather(*(self._close_socket(ws) for ws in sockets))
        if streams:
            await asyncio.wait(streams, timeout=STREAM_GRACE_S)
        for task in streams:  # a stream that did not notice: aiohttp handles the cancellation
            if not task.done():
                task.cancel()

    @staticmethod
    async def _close_socket(ws: web.WebSocketResponse) -> None:
        with contextlib.suppress(Exception):  # a peer that is already gone is fine
            await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY,
                                            message=b"server stopping"), SOCKET_CLOSE_S)


LONG_LIVED = web.AppKey("long_lived", LongLived)


def close_long_lived(app: web.Application) -> LongLived:
    """Make ``app``'s shutdown close its WebSockets and streams (once; before it is started)."""
    if LONG_LIVED in app:
        return app[LONG_LIVED]
    tracker = LongLived()
    app[LONG_LIVED] = tracker
    app.on_response_prepare.append(tracker._prepared)
    app.on_shutdown.append(tracker._shutdown)
    return tracker


def runner(app: web.Application) -> web.AppRunner:
    """An AppRunner that closes ``app``'s long-lived requests and waits for the others only
    briefly (aiohttp's default shutdown waits up to 60 s per phase)."""
    close_long_lived(app)
    return web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)


class StopSignal:
    """SIGINT and SIGTERM set ``stop`` (the first one; later ones only say so); the signal's
    name is kept for the last line."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.received: str | None = None
        self.received_at: float | None = None
        """When the first one came (``time.monotonic``)."""

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self._received, sig)

    async def unless_stopped(self, step: Awaitable[object]) -> bool:
        """Run ``step`` (a service's start, which may wait on a network) unless a stop signal
        comes first: then it is cancelled and this says False."""
        task = asyncio.ensure_future(step)
        waiter = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return False
        task.result()
        return True

    def _received(self, sig: signal.Signals) -> None:
        if self.received is None:
            self.received, self.received_at = sig.name, time.monotonic()
            self.stop.set()
        else:
            log.info("service.already_stopping", signal=sig.name)


def run_service(name: str, main: Callable[[StopSignal], Awaitable[None]]) -> None:
    """Run ``main`` until it returns; it waits on ``signals.stop`` (or its own end) and then
    stops what it started. Prints one line when done: ``NAME stopped (SIGTERM) in 0.4 s``.
    A stop that takes longer than ``STOP_BOUND_S`` exits anyway with code 1."""
    signals = StopSignal()

    async def body() -> None:
        signals.install()
        task = asyncio.ensure_future(main(signals))
        waiter = asyncio.ensure_future(signals.stop.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not task.done():
            done, _ = await asyncio.wait({task}, timeout=STOP_BOUND_S)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise click.ClickException(f"{name} did not stop within {STOP_BOUND_S:.0f} s "
                                           f"of {signals.received}; exited anyway")
        task.result()

    asyncio.run(body())
    why = "" if signals.received_at is None else \
        f" ({signals.received}) in {time.monotonic() - signals.received_at:.1f} s"
    click.echo(f"{name} stopped{why}", err=True)


class Interrupted(Exception):
    """A one-shot command was stopped by SIGINT or SIGTERM (its clean-up has run)."""

    exit_code = 130


def run_interruptible(name: str, main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` for a one-shot command (a whole case, a scenario): SIGINT or SIGTERM
    cancel it, so that its clean-up runs (servers, browser, temporary folder) before it ends
    with one line and exit code 130, never a traceback; SIGTERM no longer kills it outright."""
    received: list[str] = []

    async def body() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def cancel(sig: signal.Signals) -> None:
            if not received and task is not None:
                received.append(sig.name)
                task.cancel()

        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, cancel, sig)
        return await main

    try:
        return asyncio.run(body())
    except asyncio.CancelledError:
        if not received:
            raise
        raise Interrupted(f"{name} interrupted ({received[0]}): stopped and cleaned up, "
                          "nothing finished") from None
