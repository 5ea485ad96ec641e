"""Running the real ``forwarder`` command in a subprocess, as an operator would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def forwarder(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m forwarder ARGS`` in ``cwd``; the environment is empty unless ``env`` is given."""
    return subprocess.run(
        [sys.executable, "-m", "forwarder", *args],
        capture_output=True,
        text=True,
        env=env or {},
        cwd=str(cwd),
        timeout=60,
        check=False,
    )
