"""``forwarder dlq``: list, show, replay and purge dead letters.

It opens the queue in admin mode through the storage contract, so it works
beside a running daemon and on any backend; a running daemon picks replayed
alerts up within a second.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

from forwarder import jsonio
from forwarder.cli.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, age, config_path, err
from forwarder.cli.queue_open import open_admin
from forwarder.cli.render import pretty
from forwarder.config import QueueConfig, load_config
from forwarder.obs.logs import Redactor
from forwarder.queue import DeadLetters, QueueUnavailable
from forwarder.timeparse import parse_duration


def cmd_dlq(args: argparse.Namespace) -> int:
    # The dead-letter commands never send: no BigPanda credentials needed.
    config = load_config(config_path(args), require_credentials=False)
    # BigPanda's stored answers may echo a secret; they pass the redactor.
    redactor = Redactor()
    redactor.set_secrets(config.secrets())
    return asyncio.run(_run(args, config.queue, redactor))


async def _run(args: argparse.Namespace, cfg: QueueConfig, redactor: Redactor) -> int:
    queue = await open_admin(cfg, redactor)
    if queue is None:
        return EXIT_ERROR
    try:
        return await _DLQ[args.dlq_command](queue.dead_letters, args, redactor)
    except QueueUnavailable as exc:  # the database went away mid-command
        err(redactor.cut(str(exc), 300))
        return EXIT_ERROR
    finally:
        await queue.close()


async def _list(store: DeadLetters, args: argparse.Namespace, redactor: Redactor) -> int:
    items = await store.list(target=args.target, limit=args.limit)
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
            f" {age(now - d.failed_at):>8}  {d.check}"
        )
    return EXIT_OK


async def _show(store: DeadLetters, args: argparse.Namespace, redactor: Redactor) -> int:
    item = await store.get(args.id)
    if item is None:
        err(f"no dead letter {args.id}")
        return EXIT_ERROR
    print(pretty(redactor.scrub(item.detail(time.time()))))
    return EXIT_OK


async def _replay(store: DeadLetters, args: argparse.Namespace, redactor: Redactor) -> int:
    if not args.ids and not args.all:
        err("give dead-letter IDs or --all")
        return EXIT_USAGE
    moved = await store.replay(ids=args.ids or None, target=args.target)
    print(f"replayed {moved} dead letter(s); a running forwarder sends them within a second")
    return EXIT_OK


async def _purge(store: DeadLetters, args: argparse.Namespace, redactor: Redactor) -> int:
    if not args.ids and not args.older_than:
        err("give dead-letter IDs or --older-than DURATION")
        return EXIT_USAGE
    older = None
    if args.older_than:
        try:
            older = parse_duration(args.older_than)
        except ValueError as exc:
            err(f"--older-than: {exc}")
            return EXIT_USAGE
    purged = await store.purge(ids=args.ids or None, older_than=older)
    print(f"purged {purged} dead letter(s)")
    return EXIT_OK


_Action = Callable[[DeadLetters, argparse.Namespace, Redactor], Awaitable[int]]
_DLQ: dict[str, _Action] = {"list": _list, "show": _show, "replay": _replay, "purge": _purge}
