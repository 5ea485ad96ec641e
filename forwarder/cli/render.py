"""``forwarder render``: the BigPanda alerts an event would become, without sending them.

Exit codes: 0 when every alert would be accepted, 1 for an error (bad event,
template failure), and 2 when some alert would be refused by BigPanda (no
primary property, invalid status, no app key): the alerts are still printed,
with one warning per refused alert on stderr. Nothing is sent, so no token is
used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from forwarder import jsonio
from forwarder.cli.common import EXIT_ERROR, EXIT_OK, err, load
from forwarder.ingest.errors import ParseError
from forwarder.pipeline import Pipeline, StageError

# Some alert would be refused by BigPanda (and dead-lettered by the daemon).
EXIT_REFUSED = 2


def cmd_render(args: argparse.Namespace) -> int:
    config = load(args, require_credentials=False)  # render never sends: no token needed
    try:
        raw = sys.stdin.buffer.read() if args.event == "-" else Path(args.event).read_bytes()
    except OSError as exc:
        err(f"cannot read {args.event}: {exc.strerror}")
        return EXIT_ERROR
    try:
        doc = jsonio.loads(raw)
    except ValueError as exc:
        err(f"{args.event}: invalid JSON: {exc}")
        return EXIT_ERROR
    source = args.source or (
        "influxdb" if isinstance(doc, dict) and "_level" in doc else "kapacitor"
    )
    try:
        preview = Pipeline(config).render(source, doc, task=args.task)
    except (ParseError, StageError) as exc:
        err(f"{args.event}: {exc.message}")
        return EXIT_ERROR
    alerts = preview.alerts
    print(jsonio.dumps_str(alerts) if args.compact else pretty(alerts))
    for warning in preview.warnings:
        print(f"forwarder: warning: {args.event}: {warning}", file=sys.stderr)
    return EXIT_REFUSED if preview.warnings else EXIT_OK


def pretty(obj: Any) -> str:
    """Indented JSON, non-ASCII kept as is."""
    return json.dumps(obj, indent=2, ensure_ascii=False)
