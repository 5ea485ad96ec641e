"""``forwarder render``: the BigPanda alerts an event would become, without sending them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from forwarder import jsonio
from forwarder.cli.common import EXIT_ERROR, EXIT_OK, err, load
from forwarder.ingest.errors import ParseError
from forwarder.pipeline import StageError
from forwarder.web.runtime import build_runtime


def cmd_render(args: argparse.Namespace) -> int:
    config = load(args)
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
    pipeline = build_runtime(config).pipeline
    try:
        alerts = pipeline.render(source, doc, task=args.task)
    except (ParseError, StageError) as exc:
        err(f"{args.event}: {exc.message}")
        return EXIT_ERROR
    print(jsonio.dumps_str(alerts) if args.compact else pretty(alerts))
    return EXIT_OK


def pretty(obj: Any) -> str:
    """Indented JSON, non-ASCII kept as is."""
    return json.dumps(obj, indent=2, ensure_ascii=False)
