"""The command line: ``run``, ``check-config``, ``init``, ``render``, ``dlq``, ``alerts``,
``queue``.

One module per command (group). Signals are handled only in
:mod:`forwarder.cli.run`. Every option and argument carries help text and
every subcommand a description (a test walks the parser to keep it so).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

from forwarder import __version__
from forwarder.cli.alerts import add_alerts_parser
from forwarder.cli.check import cmd_check_config
from forwarder.cli.common import EXIT_ERROR, EXIT_OK, dead_letter_id, err, listing_limit
from forwarder.cli.dlq import cmd_dlq
from forwarder.cli.init import cmd_init
from forwarder.cli.queue import add_queue_parser
from forwarder.cli.render import cmd_render
from forwarder.cli.run import cmd_run
from forwarder.config import ConfigError

__all__ = ["build_parser", "main"]

if TYPE_CHECKING:
    SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


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
    parser.add_argument(
        "--version", action="version", version=f"forwarder {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (COMMAND -h for more)"
    )
    _add_run(sub, common)
    _add_check(sub, common)
    _add_init(sub)
    _add_render(sub, common)
    _add_dlq(sub, common)
    add_alerts_parser(sub, common)
    add_queue_parser(sub, common)
    return parser


def _add_run(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser(
        "run",
        parents=[common],
        help="run the daemon",
        description="Run the daemon: accept alerts over HTTP, queue them durably and deliver"
        " them to BigPanda. SIGTERM drains and exits; SIGHUP reloads the config.",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="write batches to the log instead of sending them (they are not kept for later)",
    )
    run.add_argument(
        "--log-format",
        choices=["json", "console"],
        help="log format (default: log.format, which is json off a terminal)",
    )
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="lowest level logged (default: log.level, info)",
    )
    run.set_defaults(func=cmd_run)


def _add_check(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    check = sub.add_parser(
        "check-config",
        parents=[common],
        help="validate the config and exit",
        description="Validate the config file (templates included) and print what it sets up,"
        " or one line naming the key at fault. Exit 0 when valid, 1 when not.",
    )
    check.add_argument(
        "--connect",
        action="store_true",
        help="also open the queue (the SQLite file, or the PostgreSQL database) and report",
    )
    check.set_defaults(func=cmd_check_config)


def _add_init(sub: SubParsers) -> None:
    init = sub.add_parser(
        "init",
        help="write the commented default config",
        description="Write the commented default config (the one shipped with forwarder) to"
        " PATH, creating its folder. An existing file is left alone unless --force is given.",
    )
    init.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="where to write it (default: $FORWARDER_CONFIG, then config/forwarder.yaml)",
    )
    init.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    init.set_defaults(func=cmd_init)


def _add_render(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    render = sub.add_parser(
        "render",
        parents=[common],
        help="print the BigPanda alerts an event file would produce",
        description="Print the BigPanda alerts an event body would become under this config,"
        " without queuing or sending anything (no BigPanda credentials needed). Exits 2 when"
        " an alert would be refused by BigPanda (it is still printed, with a warning on"
        " stderr).",
    )
    render.add_argument("event", metavar="EVENT.json", help="event body file, or - for stdin")
    render.add_argument(
        "--source",
        choices=["kapacitor", "influxdb"],
        help="the body's format (default: guessed from its shape)",
    )
    render.add_argument("--task", help="task name, as the URL path or X-Kapacitor-Task gives it")
    render.add_argument("--compact", action="store_true", help="one line of JSON")
    render.set_defaults(func=cmd_render)


def _add_dlq(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    dlq = sub.add_parser(
        "dlq",
        parents=[common],
        help="inspect and replay dead letters",
        description="Inspect, replay and purge dead letters: alerts BigPanda refused or that"
        " ran out of retries. Works beside a running daemon, on either queue backend.",
    )
    dsub = dlq.add_subparsers(
        dest="dlq_command", required=True, metavar="ACTION", help="list, show, replay or purge"
    )
    dl = dsub.add_parser(
        "list",
        parents=[common],
        help="one line per dead letter, newest first",
        description="List dead letters, newest first: id, target, reason, status, attempts,"
        " age and check.",
    )
    dl.add_argument("--target", help="only this target's dead letters")
    dl.add_argument(
        "--limit", type=listing_limit, default=100, help="at most this many (default: 100)"
    )
    dl.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    ds = dsub.add_parser(
        "show",
        parents=[common],
        help="one dead letter in full",
        description="Show one dead letter with its alert and BigPanda's answer (secrets masked).",
    )
    ds.add_argument("id", type=dead_letter_id, help="the dead letter's id, as `dlq list` shows it")
    dr = dsub.add_parser(
        "replay",
        parents=[common],
        help="put dead letters back in the queue",
        description="Put dead letters back in the queue; a running forwarder sends them within"
        " a second.",
    )
    dr.add_argument(
        "ids", type=dead_letter_id, nargs="*", metavar="ID", help="dead letters to replay"
    )
    dr.add_argument("--all", action="store_true", help="replay every dead letter")
    dr.add_argument("--target", help="only this target's dead letters")
    dp = dsub.add_parser(
        "purge",
        parents=[common],
        help="delete dead letters",
        description="Delete dead letters for good, by id or by age.",
    )
    dp.add_argument(
        "ids", type=dead_letter_id, nargs="*", metavar="ID", help="dead letters to delete"
    )
    dp.add_argument(
        "--older-than",
        metavar="DURATION",
        help="delete those older than this (units: ns, us, ms, s, m, h, d; e.g. 7d)",
    )
    dlq.set_defaults(func=cmd_dlq)


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
