"""``forwarder check-config``: validate the config and say what it sets up."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from forwarder.cli.common import EXIT_ERROR, EXIT_OK, err, load
from forwarder.cli.queue_open import QUEUE_OPEN_ERRORS, describe_queue, open_failure, where
from forwarder.config import Config, StateConfig
from forwarder.obs.logs import Redactor
from forwarder.queue import create_queue


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load(args)
    s = config.server
    print(f"config OK: {config.source_path} (sha256 {config.digest[:12]})")
    print(
        f"  listen:  {'https' if s.tls else 'http'}://{s.host}:{s.port}"
        f"  max_body_bytes={s.max_body_bytes}  auth={'on' if s.auth else 'off'}"
    )
    print(f"  queue:   {describe_queue(config.queue)}")
    print(
        f"  batch:   max_alerts={config.batch.max_alerts} linger={config.batch.linger:g}s;"
        f" retry initial={config.retry.initial:g}s max={config.retry.max:g}s"
        f" max_age={config.retry.max_age:g}s"
    )
    for t in config.targets.values():
        if t.kind == "log":
            creds = "writes alerts to the log, needs no credentials"
        else:
            creds = "credentials set" if t.has_credentials else "NO credentials (dry-run)"
        where = f" {_safe_url(t.url)}" if t.kind != "log" else ""
        print(
            f"  target:  {t.name} ({t.kind}{where}) {creds}, rate_limit={t.rate_limit:g}/s,"
            f" max_in_flight={t.max_in_flight}"
        )
    print(f"  state:   {describe_state(config.state)}")
    for r in config.routes:
        match = "everything" if r.match is None else _describe_match(r)
        own = f"; state {describe_state(r.state)}" if r.state != config.state else ""
        print(f"  route:   {r.name} -> {r.target} ({match}){own}")
    if config.unconfigured_targets:
        print("  mode:    DRY-RUN (alerts are logged, not sent)")
        print(f"           to send, set: {', '.join(config.empty_credentials())}")
    if getattr(args, "connect", False):
        return asyncio.run(_connect(config))
    return EXIT_OK


async def _connect(config: Config) -> int:
    """Open the queue without taking it over (as ``dlq`` does) and say how that went."""
    redactor = Redactor()
    redactor.set_secrets(config.secrets())
    queue = create_queue(config.queue, admin=True)
    try:
        await queue.open()
    except FileNotFoundError:  # reached, but no queue there yet (QueueMissing)
        print(f"  connect: no queue at {where(config.queue)} yet; `forwarder run` creates it")
        return EXIT_OK
    except QUEUE_OPEN_ERRORS as exc:
        err(open_failure(config.queue, exc, redactor))
        return EXIT_ERROR
    try:
        stats = await queue.stats()
    finally:
        await queue.close()
    print(
        f"  connect: OK, {config.queue.backend} queue opened"
        f" ({stats.events} queued,"
        f" {sum(t.dead_letters for t in stats.targets.values())} dead letters)"
    )
    return EXIT_OK


def describe_state(state: StateConfig) -> str:
    """One line for an alert-state policy, e.g. ``repeat_interval=4h flap=off ...``."""
    repeat = (
        f"repeat_interval={_dur(state.repeat_interval)}" if state.repeat_interval else ("dedup=off")
    )
    dedup_on = f" dedup_on=[{', '.join(state.dedup_on)}]" if state.dedup_on else ""
    f = state.flap
    flap = (
        f"flap={f.transitions} changes/{_dur(f.window)} hold={_dur(f.hold)}"
        if f.transitions
        else "flap=off"
    )
    resolve = (
        f"resolve_after={_dur(state.resolve_after)}"
        if state.resolve_after
        else ("resolve_after=off")
    )
    return f"{repeat}{dedup_on} {flap} {resolve} retention={_dur(state.retention)}"


def _dur(seconds: float) -> str:
    """Seconds in the largest whole unit (``4h``, ``90s``), as config durations are written."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


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
