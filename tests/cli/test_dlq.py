"""``forwarder dlq``: a queue that cannot be opened is one error line, not a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli.support import forwarder

CONFIG = "queue:\n  path: queue.db\ntargets:\n  bigpanda:\n    kind: alerts_v2\n"


def dlq(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m forwarder dlq ARGS --config CONFIG`` with an empty environment."""
    return forwarder("dlq", *args, "--config", str(config), cwd=config.parent)


@pytest.mark.parametrize("action", [["list"], ["show", "1"], ["replay", "--all"]])
def test_not_a_queue_file_is_one_line(tmp_path: Path, action: list[str]) -> None:
    """A queue path holding something that is not a forwarder queue: exit 1, one line naming
    it, and the file is left as it was."""
    config = tmp_path / "forwarder.yaml"
    config.write_text(CONFIG)
    junk = b"not a database\n" * 300
    (tmp_path / "queue.db").write_bytes(junk)
    result = dlq(config, *action)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("forwarder: error: ")
    assert "queue.db" in result.stderr
    assert (tmp_path / "queue.db").read_bytes() == junk


def test_missing_queue_says_the_daemon_never_ran(tmp_path: Path) -> None:
    """No queue file yet: one line saying so; dlq needs no BigPanda credentials either."""
    config = tmp_path / "forwarder.yaml"
    config.write_text(CONFIG.replace("kind: alerts_v2", "kind: alerts_v2\n    app_key: k-1"))
    result = dlq(config, "list")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "queue.db").exists()


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(["show", "9223372036854775808"], id="id-past-64-bits"),
        pytest.param(["show", "\u00b2"], id="id-not-ascii"),
        pytest.param(["replay", "1", "99999999999999999999"], id="replay-id-past-64-bits"),
        pytest.param(["purge", "-3"], id="purge-negative-id"),
        pytest.param(["list", "--limit", "9" * 5000], id="limit-5000-digits"),
        pytest.param(["list", "--limit", "0"], id="limit-zero"),
    ],
)
def test_ids_and_limits_out_of_range_are_usage_errors(tmp_path: Path, action: list[str]) -> None:
    """Ids the stores cannot hold and absurd limits: exit 2 naming the argument, no traceback."""
    config = tmp_path / "forwarder.yaml"
    config.write_text(CONFIG)
    result = dlq(config, *action)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: argument" in result.stderr


def test_a_limit_with_leading_zeros_is_still_a_limit(tmp_path: Path) -> None:
    """``--limit 0000005`` is 5, not a usage error (the queue is missing: exit 1, one line)."""
    config = tmp_path / "forwarder.yaml"
    config.write_text(CONFIG)
    result = dlq(config, "list", "--limit", "0000005")
    assert result.returncode == 1, result.stderr
    assert "error: argument" not in result.stderr
