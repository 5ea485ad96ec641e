"""Command line: ``run``, ``check-config``, ``render`` and ``dlq``.

This is the only module that handles signals: SIGTERM and SIGINT drain and
exit 0, SIGHUP reloads the config.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from forwarder import __version__, deadletters, jsonio, logs, sdnotify, store
from forwarder.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from forwarder.ingest.errors import IngestError
from forwarder.queue import QueueLocked
from forwarder.state import RELOADER, build_runtime
from forwarder.timeparse import parse_duration

KEEPALIVE_TIMEOUT = 75.0
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def _config_path(args: argparse.Namespace) -> Path:
    given = getattr(args, "config", None)
    if given:
        return Path(given)
    env = os.environ.get("FORWARDER_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def _load(args: argparse.Namespace) -> Config:
    config = load_config(_config_path(args))
    build_runtime(config)  # compiles templates: a syntax error is a config error
    return config


def _err(message: str) -> None:
    print(f"forwarder: error: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- run


async def serve(config: Config, *, dry_run: bool) -> int:
    """Run the daemon until SIGTERM/SIGINT; reload on SIGHUP."""
    from forwarder.app import create_app

    log = logs.get_logger()
    app = create_app(config, dry_run=dry_run)
    runner = web.AppRunner(
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
    except QueueLocked as exc:
        _err(str(exc))
        return EXIT_ERROR
    except OSError as exc:
        _err(f"cannot open the queue at {config.queue.path}: {exc}")
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
        _err(f"cannot listen on {config.server.host}:{config.server.port}: {exc.strerror}")
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
        queue=str(config.queue.path),
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
    config = _load(args)
    logs.configure(args.log_level or config.log.level, args.log_format or config.log.format)
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        runner = asyncio.run
    else:  # pragma: no cover - only where uvloop is installed
        runner = uvloop.run
    return int(runner(serve(config, dry_run=args.dry_run)))


# --------------------------------------------------------------------------- check-config


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    s = config.server
    print(f"config OK: {config.source_path} (sha256 {config.digest[:12]})")
    print(
        f"  listen:  {'https' if s.tls else 'http'}://{s.host}:{s.port}"
        f"  max_body_bytes={s.max_body_bytes}  auth={'on' if s.auth else 'off'}"
    )
    print(
        f"  queue:   {config.queue.path} (synchronous={config.queue.synchronous},"
        f" max_events={config.queue.max_events}, max_bytes={config.queue.max_bytes})"
    )
    print(
        f"  batch:   max_alerts={config.batch.max_alerts} linger={config.batch.linger:g}s;"
        f" retry initial={config.retry.initial:g}s max={config.retry.max:g}s"
        f" max_age={config.retry.max_age:g}s"
    )
    for t in config.targets.values():
        creds = "credentials set" if t.has_credentials else "NO credentials (dry-run)"
        where = f" {_safe_url(t.url)}" if t.kind != "log" else ""
        print(
            f"  target:  {t.name} ({t.kind}{where}) {creds}, rate_limit={t.rate_limit:g}/s,"
            f" max_in_flight={t.max_in_flight}"
        )
    for r in config.routes:
        match = "everything" if r.match is None else _describe_match(r)
        print(f"  route:   {r.name} -> {r.target} ({match})")
    if config.unconfigured_targets:
        print("  mode:    DRY-RUN (alerts are logged, not sent)")
    return EXIT_OK


def _safe_url(url: str) -> str:
    """The URL without its query string, which may carry ``access_token`` (OIM allows it)."""
    base, sep, _ = url.partition("?")
    return f"{base}?…" if sep else base


def _describe_match(r: Any) -> str:
    m = r.match
    parts = []
    if m.sources:
        parts.append("source in " + ",".join(sorted(m.sources)))
    if m.tasks:
        parts.append("task ~ " + ",".join(m.tasks))
    if m.levels:
        parts.append("level in " + ",".join(sorted(lv.value for lv in m.levels)))
    for k, v in m.tags.items():
        parts.append(f"{k}={v}")
    return "; ".join(parts) or "everything"


# --------------------------------------------------------------------------- render


def cmd_render(args: argparse.Namespace) -> int:
    config = _load(args)
    try:
        raw = sys.stdin.buffer.read() if args.event == "-" else Path(args.event).read_bytes()
    except OSError as exc:
        _err(f"cannot read {args.event}: {exc.strerror}")
        return EXIT_ERROR
    try:
        doc = jsonio.loads(raw)
    except ValueError as exc:
        _err(f"{args.event}: invalid JSON: {exc}")
        return EXIT_ERROR
    source = args.source or (
        "influxdb" if isinstance(doc, dict) and "_level" in doc else "kapacitor"
    )
    pipeline = build_runtime(config).pipeline
    try:
        alerts = pipeline.render(source, doc, task=args.task)
    except IngestError as exc:
        _err(f"{args.event}: {exc.message}")
        return EXIT_ERROR
    print(jsonio.dumps_str(alerts) if args.compact else _pretty(alerts))
    return EXIT_OK


def _pretty(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, ensure_ascii=False)


# --------------------------------------------------------------------------- dlq


def _open_store(args: argparse.Namespace) -> Any:
    config = load_config(_config_path(args))
    logs.set_secrets(config.secrets())  # BigPanda's stored answers pass the redactor
    return store.connect(config.queue.path, synchronous=config.queue.synchronous, create=False)


def cmd_dlq(args: argparse.Namespace) -> int:
    try:
        conn = _open_store(args)
    except FileNotFoundError as exc:
        _err(f"{exc} (has the daemon ever run with this config?)")
        return EXIT_ERROR
    try:
        return int(_DLQ[args.dlq_command](conn, args))
    finally:
        conn.close()


def _dlq_list(conn: Any, args: argparse.Namespace) -> int:
    items = deadletters.list_dead_letters(conn, target=args.target, limit=args.limit)
    now = time.time()
    if args.json:
        print(jsonio.dumps_str([d.summary(now) for d in items]))
        return EXIT_OK
    if not items:
        print("no dead letters")
        return EXIT_OK
    print(
        f"{'ID':>6}  {'TARGET':<16} {'REASON':<12} {'STATUS':>6} {'ATTEMPTS':>8} {'AGE':>8}  CHECK"
    )
    for d in items:
        status = str(d.status) if d.status is not None else "-"
        print(
            f"{d.id:>6}  {d.target:<16} {d.reason:<12} {status:>6} {d.attempts:>8}"
            f" {_age(now - d.failed_at):>8}  {d.check}"
        )
    return EXIT_OK


def _age(seconds: float) -> str:
    s = int(max(0, seconds))
    if s >= 86400:
        return f"{s // 86400}d{(s % 86400) // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60}m"
    if s >= 60:
        return f"{s // 60}m{s % 60}s"
    return f"{s}s"


def _dlq_show(conn: Any, args: argparse.Namespace) -> int:
    item = deadletters.get_dead_letter(conn, args.id)
    if item is None:
        _err(f"no dead letter {args.id}")
        return EXIT_ERROR
    print(_pretty(logs.redactor.scrub(item.detail())))
    return EXIT_OK


def _dlq_replay(conn: Any, args: argparse.Namespace) -> int:
    if not args.ids and not args.all:
        _err("give dead-letter IDs or --all")
        return EXIT_USAGE
    moved = deadletters.replay(conn, ids=args.ids or None, target=args.target)
    print(f"replayed {moved} dead letter(s); a running forwarder sends them within a second")
    return EXIT_OK


def _dlq_purge(conn: Any, args: argparse.Namespace) -> int:
    if not args.ids and not args.older_than:
        _err("give dead-letter IDs or --older-than DURATION")
        return EXIT_USAGE
    older = None
    if args.older_than:
        try:
            older = parse_duration(args.older_than)
        except ValueError as exc:
            _err(f"--older-than: {exc}")
            return EXIT_USAGE
    purged = deadletters.purge(conn, ids=args.ids or None, older_than=older)
    print(f"purged {purged} dead letter(s)")
    return EXIT_OK


_DLQ = {"list": _dlq_list, "show": _dlq_show, "replay": _dlq_replay, "purge": _dlq_purge}


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every subcommand takes ``--config``)."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's parser must not reset a --config given before it
    # (argparse copies each subparser's defaults over the namespace).
    common.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="config file (default: $FORWARDER_CONFIG, then config/forwarder.yaml)",
    )
    parser = argparse.ArgumentParser(
        prog="forwarder",
        description="Durable alert forwarder from Kapacitor and InfluxDB 2.x to BigPanda.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"forwarder {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run the daemon")
    run.add_argument("--dry-run", action="store_true", help="log batches instead of sending them")
    run.add_argument("--log-format", choices=["json", "console"], help="default: json off a TTY")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", parents=[common], help="validate the config and exit")
    check.set_defaults(func=cmd_check_config)

    render = sub.add_parser(
        "render", parents=[common], help="print the BigPanda alerts an event file would produce"
    )
    render.add_argument("event", metavar="EVENT.json", help="event body file, or - for stdin")
    render.add_argument("--source", choices=["kapacitor", "influxdb"], help="default: by shape")
    render.add_argument("--task", help="task name, as the URL path or X-Kapacitor-Task gives it")
    render.add_argument("--compact", action="store_true", help="one line of JSON")
    render.set_defaults(func=cmd_render)

    dlq = sub.add_parser("dlq", parents=[common], help="inspect and replay dead letters")
    dsub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("list", parents=[common], help="one line per dead letter, newest first")
    dl.add_argument("--target")
    dl.add_argument("--limit", type=int, default=100)
    dl.add_argument("--json", action="store_true")
    ds = dsub.add_parser("show", parents=[common], help="one dead letter in full")
    ds.add_argument("id", type=int)
    dr = dsub.add_parser("replay", parents=[common], help="put dead letters back in the queue")
    dr.add_argument("ids", type=int, nargs="*", metavar="ID")
    dr.add_argument("--all", action="store_true")
    dr.add_argument("--target")
    dp = dsub.add_parser("purge", parents=[common], help="delete dead letters")
    dp.add_argument("ids", type=int, nargs="*", metavar="ID")
    dp.add_argument("--older-than", metavar="DURATION", help="e.g. 7d")
    dlq.set_defaults(func=cmd_dlq)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``forwarder`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `forwarder dlq list | head`: the reader left; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
