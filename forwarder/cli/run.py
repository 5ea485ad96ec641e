"""``forwarder run``: the daemon.

This is the only module that handles signals: SIGTERM and SIGINT drain and
exit 0, SIGHUP reloads the config.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import time
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from forwarder import __version__
from forwarder.cli import sdnotify
from forwarder.cli.common import EXIT_ERROR, EXIT_OK, err, load
from forwarder.cli.queue_open import QUEUE_OPEN_ERRORS, open_failure, where
from forwarder.config import Config, ConfigError
from forwarder.obs import logs
from forwarder.obs.logs import Redactor
from forwarder.web.app import create_app
from forwarder.web.keys import RELOADER
from forwarder.web.server import Runner

# aiohttp has no header-read timeout; an idle or trickling connection is
# closed after this long (aiohttp 3.14's default is an hour).
KEEPALIVE_TIMEOUT = 75.0


async def serve(config: Config, *, dry_run: bool, redactor: Redactor) -> int:
    """Run the daemon until SIGTERM/SIGINT; reload on SIGHUP."""
    log = logs.get_logger()
    app = create_app(config, dry_run=dry_run, redactor=redactor)
    runner = Runner(
        app,
        handle_signals=False,
        access_log=logging.getLogger("forwarder.access") if config.server.access_log else None,
        access_log_class=_AccessLogger,
        shutdown_timeout=config.server.shutdown_timeout,
        # aiohttp has no header-read timeout; an idle or trickling connection is
        # closed after this long (aiohttp 3.14's default is an hour).
        keepalive_timeout=KEEPALIVE_TIMEOUT,
    )
    try:
        await runner.setup()
    except QUEUE_OPEN_ERRORS as exc:
        # One line (naming the queue, the other daemon's PID, the fix), never a traceback.
        err(open_failure(config.queue, exc, redactor))
        await runner.cleanup()
        return EXIT_ERROR
    ssl_ctx: ssl.SSLContext | None = None
    if config.server.tls is not None:
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(config.server.tls.cert_file, config.server.tls.key_file)
    site = web.TCPSite(
        runner,
        config.server.host,
        config.server.port,
        ssl_context=ssl_ctx,
        shutdown_timeout=config.server.shutdown_timeout,
        reuse_address=True,
    )
    try:
        await site.start()
    except OSError as exc:
        err(f"cannot listen on {config.server.host}:{config.server.port}: {exc.strerror}")
        await runner.cleanup()
        return EXIT_ERROR

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[Any]] = set()

    async def do_reload() -> None:
        sdnotify.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            await app[RELOADER].reload()
        except ConfigError:
            pass  # logged by the reloader; the old config keeps running
        except Exception as exc:  # never let a reload take the daemon down
            log.error("config_reload_failed", error=repr(exc))
        finally:
            sdnotify.notify("READY=1")

    def on_hup() -> None:
        task = asyncio.create_task(do_reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)

    scheme = "https" if ssl_ctx else "http"
    log.info(
        "started",
        version=__version__,
        listen=f"{scheme}://{config.server.host}:{config.server.port}",
        config=str(config.source_path),
        queue=where(config.queue),
        targets=sorted(config.targets),
        dry_run=dry_run or bool(config.unconfigured_targets),
    )
    sdnotify.notify("READY=1")
    await stop.wait()
    sdnotify.notify("STOPPING=1")
    log.info("stopping", shutdown_timeout=config.server.shutdown_timeout)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.remove_signal_handler(sig)
    await runner.cleanup()
    log.info("stopped")
    return EXIT_OK


class _AccessLogger(AbstractAccessLogger):
    """One structured event per request, when ``server.access_log`` is on."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        logs.get_logger().info(
            "http_request",
            method=request.method,
            path=request.path,
            status=response.status,
            duration_ms=round(time * 1000, 2),
            remote=request.remote,
        )


def cmd_run(args: argparse.Namespace) -> int:
    config = load(args)
    redactor = logs.Redactor()
    logs.configure(
        args.log_level or config.log.level, args.log_format or config.log.format, redactor=redactor
    )
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        runner = asyncio.run
    else:  # pragma: no cover - only where uvloop is installed
        runner = uvloop.run
    return int(runner(serve(config, dry_run=args.dry_run, redactor=redactor)))
