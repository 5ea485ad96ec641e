"""The code base stays lint-clean, formatted and ``mypy --strict`` clean.

These run the real tools over the repository, so ``python -m pytest`` alone
proves what CI promises.
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_ruff_check_is_clean() -> None:
    """Every file passes the ruff rules configured in pyproject.toml."""
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    """Every file is formatted as ``ruff format`` would format it."""
    result = _run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    """The package, the tests and the benchmarks type-check under ``mypy --strict``."""
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
