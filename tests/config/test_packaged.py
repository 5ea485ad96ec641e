"""The default config ships inside the package, identical to the checkout's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from forwarder.config.packaged import default_config_text
from tests.conftest import REPO


def test_packaged_config_is_the_checkout_config() -> None:
    """forwarder/data/forwarder.yaml and config/forwarder.yaml are byte for byte the same."""
    checkout = (REPO / "config" / "forwarder.yaml").read_text(encoding="utf-8")
    assert default_config_text() == checkout
    assert (REPO / "forwarder" / "data" / "forwarder.yaml").read_bytes() == (
        REPO / "config" / "forwarder.yaml"
    ).read_bytes()


def test_package_build_carries_the_default_config(tmp_path: Path) -> None:
    """setuptools' build step (what a wheel is made of) copies forwarder/data/forwarder.yaml,
    so an install without the checkout can still run `forwarder init`."""
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "data", "*.egg-info", "build", "dist", "__pycache__", ".*cache"
        ),
    )
    # The copy left out the repo's top-level data/ folder (the queue); put the package's back.
    shutil.copytree(REPO / "forwarder" / "data", src / "forwarder" / "data")
    out = tmp_path / "lib"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import setuptools; setuptools.setup()",
            "-q",
            "build_py",
            "--build-lib",
            str(out),
        ],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    shipped = out / "forwarder" / "data" / "forwarder.yaml"
    assert shipped.read_bytes() == (REPO / "config" / "forwarder.yaml").read_bytes()
