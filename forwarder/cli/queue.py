"""``forwarder queue migrate``: move a SQLite queue into PostgreSQL.

``--from sqlite:PATH`` is the queue file; it must not be in use (the command
takes its lock, as a daemon does, and refuses while one runs). ``--to
postgres`` takes ``queue.dsn`` from the config; ``--to`` may also be a DSN.
The move is resumable and never queues an alert twice (see
:mod:`forwarder.queue.migrate`); the output and errors never show a password.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from forwarder.cli.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, config_path, err
from forwarder.config import QueueConfig, load_config
from forwarder.config.secrets import Secret, dsn_passwords
from forwarder.queue.errors import QueueLocked, QueueOpenError, QueueUnavailable

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_queue_parser(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """``forwarder queue …``."""
    queue = sub.add_parser(
        "queue",
        parents=[common],
        help="move the queue between backends",
        description="Operate on the queue store itself.",
    )
    qsub = queue.add_subparsers(
        dest="queue_command", required=True, metavar="ACTION", help="migrate"
    )
    mig = qsub.add_parser(
        "migrate",
        parents=[common],
        help="move queued alerts and dead letters from SQLite to PostgreSQL",
        description="Move every queued alert and dead letter from a SQLite queue file into a"
        " PostgreSQL queue, creating its schema if needed. Stop the daemon that uses the file"
        " first. Safe to run again after an interruption: nothing is queued twice.",
    )
    mig.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="sqlite:PATH",
        help="the SQLite queue file, e.g. sqlite:/var/lib/forwarder/queue.db",
    )
    mig.add_argument(
        "--to",
        dest="dest",
        required=True,
        metavar="postgres|DSN",
        help="'postgres' for queue.dsn of the config, or a postgresql:// DSN",
    )
    mig.set_defaults(func=cmd_queue)


def cmd_queue(args: argparse.Namespace) -> int:
    """Run ``forwarder queue ACTION``."""
    source = str(args.source)
    if not source.startswith("sqlite:") or not source[len("sqlite:") :]:
        err(f"--from must be sqlite:PATH, not {source!r}")
        return EXIT_USAGE
    path = Path(source[len("sqlite:") :])
    dsn = str(args.dest)
    if dsn == "postgres":
        config = load_config(config_path(args), require_credentials=False)
        dsn = config.queue.dsn.reveal()
        if not dsn:
            err("--to postgres takes queue.dsn from the config, which sets none; give a DSN")
            return EXIT_USAGE
    elif "://" not in dsn and "=" not in dsn:
        err("--to must be 'postgres' or a PostgreSQL DSN (postgresql://user@host/db)")
        return EXIT_USAGE
    if not path.is_file():
        err(f"no queue file at {path}")
        return EXIT_ERROR
    return asyncio.run(_migrate(path, dsn, str(path.resolve())))


async def _migrate(path: Path, dsn: str, source_key: str) -> int:
    # Imported here: asyncpg is an optional dependency (the "postgres" extra).
    from forwarder.queue.migrate import sqlite_to_postgres
    from forwarder.queue.postgres import PostgresQueue
    from forwarder.queue.sqlite import SQLiteQueue

    def scrub(text: str) -> str:
        for secret in dsn_passwords(dsn):
            text = text.replace(secret, "***")
        return text

    source = SQLiteQueue(QueueConfig(path=path))
    target = PostgresQueue(
        QueueConfig(backend="postgres", dsn=Secret(dsn)), dsn=dsn, open_timeout=10.0
    )
    try:
        await source.open()
    except QueueLocked as exc:
        err(f"{exc}: stop that daemon first (the file must have no other writer)")
        return EXIT_ERROR
    except (QueueOpenError, OSError) as exc:
        err(f"cannot open {path}: {exc}")
        return EXIT_ERROR
    try:
        try:
            await target.open()
        except (QueueOpenError, QueueUnavailable) as exc:
            err(scrub(str(exc)))
            return EXIT_ERROR
        try:
            moved = await sqlite_to_postgres(source, target, source_key=source_key)
        except QueueUnavailable as exc:
            err(f"{scrub(str(exc))} (run the command again to finish: nothing moves twice)")
            return EXIT_ERROR
        finally:
            await target.close()
    finally:
        await source.close()
    line = (
        f"moved {moved.alerts} queued alerts and {moved.dead_letters} dead letters"
        f" from {path} to {target.description}"
    )
    if moved.already:
        line += f" ({moved.already} already moved by an earlier run, now removed from the file)"
    print(line)
    return EXIT_OK
