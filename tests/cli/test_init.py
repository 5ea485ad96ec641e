"""``forwarder init``: the commented default config for a new install, never over a file."""

from __future__ import annotations

import os
from pathlib import Path

from forwarder.config.packaged import default_config_text
from tests.cli.support import forwarder


def test_init_writes_the_default_config_where_run_looks_for_it(tmp_path: Path) -> None:
    """`forwarder init` in an empty folder writes config/forwarder.yaml, which check-config
    then finds by itself, with the queue in ./data."""
    result = forwarder("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = tmp_path / "config" / "forwarder.yaml"
    assert written.read_text() == default_config_text()
    assert oct(written.stat().st_mode & 0o777) == oct(0o644)
    assert result.stdout.startswith("wrote config/forwarder.yaml\n")
    assert f"queue: {tmp_path / 'data' / 'queue.db'}" in result.stdout
    assert "`forwarder check-config`" in result.stdout  # no --config needed here

    check = forwarder("check-config", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "DRY-RUN" in check.stdout


def test_init_to_a_path_creates_its_folder(tmp_path: Path) -> None:
    """`forwarder init PATH` creates missing folders and says how to use the file."""
    target = tmp_path / "etc" / "forwarder" / "forwarder.yaml"
    result = forwarder("init", str(target), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == default_config_text()
    assert f"--config {target}" in result.stdout


def test_init_follows_forwarder_config(tmp_path: Path) -> None:
    """Without PATH, init writes where $FORWARDER_CONFIG points, as run would read."""
    target = tmp_path / "from-env.yaml"
    result = forwarder("init", cwd=tmp_path, env={"FORWARDER_CONFIG": str(target)})
    assert result.returncode == 0, result.stderr
    assert target.read_text() == default_config_text()


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    """An existing file is kept, with one error line naming --force; --force replaces it."""
    target = tmp_path / "forwarder.yaml"
    target.write_text("# mine\n")
    refused = forwarder("init", str(target), cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr == (
        f"forwarder: error: {target} exists; not overwriting it (pass --force to replace it)\n"
    )
    assert target.read_text() == "# mine\n"

    forced = forwarder("init", str(target), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert target.read_text() == default_config_text()
    assert [p.name for p in tmp_path.iterdir()] == ["forwarder.yaml"]  # no temp file left


def test_init_refuses_a_directory_and_an_unwritable_place(tmp_path: Path) -> None:
    """A folder as PATH, or a place that cannot be written, is one error line."""
    as_dir = forwarder("init", str(tmp_path), cwd=tmp_path)
    assert as_dir.returncode == 1
    assert as_dir.stderr.startswith(f"forwarder: error: {tmp_path} is a directory")

    blocker = tmp_path / "file"
    blocker.write_text("")
    under_file = forwarder("init", str(blocker / "forwarder.yaml"), cwd=tmp_path)
    assert under_file.returncode == 1
    assert under_file.stderr.count("\n") == 1, under_file.stderr
    assert under_file.stderr.startswith(
        f"forwarder: error: cannot write {blocker / 'forwarder.yaml'}"
    )
    assert os.listdir(tmp_path) == ["file"]
