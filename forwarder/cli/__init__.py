"""The command line: ``run``, ``check-config``, ``render`` and ``dlq``, one module each.

Signals are handled only in :mod:`forwarder.cli.run`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from forwarder import __version__
from forwarder.cli.check import cmd_check_config
from forwarder.cli.common import EXIT_ERROR, EXIT_OK, err
from forwarder.cli.dlq import cmd_dlq
from forwarder.cli.render import cmd_render
from forwarder.cli.run import cmd_run
from forwarder.config import ConfigError

__all__ = ["build_parser", "main"]


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
        err(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `forwarder dlq list | head`: the reader left; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
