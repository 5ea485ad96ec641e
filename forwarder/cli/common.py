"""What every command shares: exit codes, finding and loading the config, error output."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from forwarder.config import DEFAULT_CONFIG_PATH, Config, load_config
from forwarder.web.runtime import build_runtime

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def config_path(args: argparse.Namespace) -> Path:
    """``--config``, then ``$FORWARDER_CONFIG``, then ``config/forwarder.yaml``."""
    given = getattr(args, "config", None)
    if given:
        return Path(given)
    env = os.environ.get("FORWARDER_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load(args: argparse.Namespace, *, require_credentials: bool = True) -> Config:
    """The config, with its templates compiled (a syntax error is a config error).

    ``require_credentials=False`` is for commands that never send (``render``):
    no BigPanda token or app key is needed, not even an unset ``${VAR}`` for one.
    """
    config = load_config(config_path(args), require_credentials=require_credentials)
    build_runtime(config)
    return config


def err(message: str) -> None:
    """``forwarder: error: message`` on stderr, always one line."""
    text = " ".join(message.split("\n")).replace("\r", " ")
    print(f"forwarder: error: {text}", file=sys.stderr)


# Dead-letter ids are 64-bit signed integers in both backends.
_MAX_ID = 2**63 - 1


def dead_letter_id(text: str) -> int:
    """An argparse type: a dead letter's id (ASCII digits, at most 2**63 - 1)."""
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= _MAX_ID:
        raise argparse.ArgumentTypeError(f"not a dead-letter id: {text[:40]!r}")
    return int(text)


def listing_limit(text: str) -> int:
    """An argparse type: how many to list, 1 to 10,000."""
    digits = text.lstrip("0")
    if not (text.isascii() and text.isdigit()) or not 0 < int(digits[:6] or "0") <= 10_000:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 10000: {text[:40]!r}")
    return int(text)


def age(seconds: float) -> str:
    """A duration as a listing shows it: ``42s``, ``5m3s``, ``2h10m``, ``3d4h``."""
    s = int(max(0, seconds))
    if s >= 86400:
        return f"{s // 86400}d{(s % 86400) // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60}m"
    if s >= 60:
        return f"{s // 60}m{s % 60}s"
    return f"{s}s"
