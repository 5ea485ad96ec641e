"""``forwarder init [PATH]``: write the commented default config for a new install.

The text is the one shipped inside the package (``forwarder/data/``), so a
wheel install has it without a checkout. An existing file is never
overwritten without ``--force``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from forwarder.cli.common import EXIT_ERROR, EXIT_OK, config_path, err
from forwarder.config import ConfigError, load_config
from forwarder.config.packaged import default_config_text


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.path) if args.path else config_path(args)
    if path.is_dir():
        err(f"{path} is a directory; give a file name, e.g. {path / 'forwarder.yaml'}")
        return EXIT_ERROR
    if (path.exists() or path.is_symlink()) and not args.force:
        err(f"{path} exists; not overwriting it (pass --force to replace it)")
        return EXIT_ERROR
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, default_config_text())
    except OSError as exc:
        err(f"cannot write {path}: {exc.strerror or exc}")
        return EXIT_ERROR
    print(f"wrote {path}")
    try:
        config = load_config(path, require_credentials=False)
    except ConfigError as exc:  # e.g. FORWARDER_LISTEN set to something invalid
        print(f"  note: with this environment it does not load yet: {exc}")
    else:
        print(f"  queue: {config.queue.path} (set FORWARDER_DATA_DIR to move it)")
    flag = "" if path == config_path(argparse.Namespace()) else f" --config {path}"
    print(
        "  next:  set BIGPANDA_TOKEN and BIGPANDA_APP_KEY (until then alerts are logged,"
        f" not sent), check with `forwarder check-config{flag}`,"
        f" then start with `forwarder run{flag}`"
    )
    return EXIT_OK


def _write_atomically(path: Path, text: str) -> None:
    """Write beside ``path`` and rename over it, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        # The default config holds no secrets; readable like any file in /etc.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
