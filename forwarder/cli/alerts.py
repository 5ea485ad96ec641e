"""``forwarder alerts``: the alert-state store, one line per identity.

It opens the store in admin mode through the storage contract, like
``forwarder dlq``, so it works beside a running daemon and on either backend,
and shows what every replica decided. It only reads.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING

from forwarder import jsonio
from forwarder.cli.common import EXIT_ERROR, EXIT_OK, age, config_path, err, listing_limit
from forwarder.cli.queue_open import open_admin
from forwarder.config import QueueConfig, load_config
from forwarder.obs.logs import Redactor
from forwarder.queue import QueueUnavailable
from forwarder.queue.contract import AlertFilter
from forwarder.state import AlertView

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

# Columns wider than this are cut (with "…") so that a line stays a line.
_HOST_WIDTH = 24


def add_alerts_parser(sub: SubParsers, common: argparse.ArgumentParser) -> None:
    """``forwarder alerts [--firing | --flapping] [--target T] [--limit N] [--json]``."""
    alerts = sub.add_parser(
        "alerts",
        parents=[common],
        help="show the alert state: what is firing, flapping, suppressed",
        description="Show each alert identity's state as the forwarder keeps it: status and"
        " since when, when it was last seen and last sent, whether it is flapping and how"
        " many repeats were suppressed. Most recently seen first. Reads the queue's store, so"
        " it works beside a running daemon and shows every replica's decisions.",
    )
    which = alerts.add_mutually_exclusive_group()
    which.add_argument(
        "--firing", action="store_true", help="only identities whose status is not ok"
    )
    which.add_argument("--flapping", action="store_true", help="only identities marked flapping")
    alerts.add_argument("--target", help="only this target's identities")
    alerts.add_argument(
        "--limit", type=listing_limit, default=100, help="at most this many (default: 100)"
    )
    alerts.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    alerts.set_defaults(func=cmd_alerts)


def cmd_alerts(args: argparse.Namespace) -> int:
    """Run ``forwarder alerts``: exit 0, or 1 when the store cannot be read."""
    # Reading the store never sends: no BigPanda credentials needed.
    config = load_config(config_path(args), require_credentials=False)
    redactor = Redactor()
    redactor.set_secrets(config.secrets())
    return asyncio.run(_run(args, config.queue, redactor))


async def _run(args: argparse.Namespace, cfg: QueueConfig, redactor: Redactor) -> int:
    queue = await open_admin(cfg, redactor)
    if queue is None:
        return EXIT_ERROR
    status: AlertFilter | None = "firing" if args.firing else "flapping" if args.flapping else None
    try:
        views = await queue.alerts.list(status=status, target=args.target, limit=args.limit)
    except QueueUnavailable as exc:  # the database went away mid-command
        err(redactor.cut(str(exc), 300))
        return EXIT_ERROR
    finally:
        await queue.close()
    if args.json:
        print(jsonio.dumps_str([v.to_json() for v in views]))
    elif not views:
        print("no alerts" if status is None else f"no {status} alerts")
    else:
        _table(views, time.time())
    return EXIT_OK


def _table(views: list[AlertView], now: float) -> None:
    """One line per identity; times as ages ("-": never sent). CHECK is last: it may hold spaces."""
    print(
        f"{'TARGET':<16} {'STATUS':<9} {'SINCE':>8} {'SEEN':>8} {'SENT':>8} {'FLAP':<4}"
        f" {'SUPPR':>6}  {'HOST':<{_HOST_WIDTH}}  CHECK"
    )
    for v in views:
        sent = age(now - v.last_sent) if v.last_sent is not None else "-"
        host = _cut(v.host or v.primary or "-", _HOST_WIDTH)
        print(
            f"{v.target:<16} {v.status:<9} {age(now - v.since):>8} {age(now - v.last_seen):>8}"
            f" {sent:>8} {'yes' if v.flapping else 'no':<4} {v.suppressed:>6}"
            f"  {host:<{_HOST_WIDTH}}  {v.check}"
        )


def _cut(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters."""
    text = " ".join(text.split()) or "-"
    return text if len(text) <= width else text[: width - 1] + "…"
