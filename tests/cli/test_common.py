"""Loading the config for a command: with credentials checked, or not (``render``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from forwarder.cli.common import load
from forwarder.config import ConfigError

APP_KEY_ONLY = (
    "targets:\n  bp:\n    kind: alerts_v2\n    token: ${NO_SUCH_TOKEN_VAR}\n    app_key: k-1\n"
)


def test_commands_that_never_send_need_no_token(tmp_path: Path) -> None:
    """load(require_credentials=False) takes a config whose token variable is unset, which a
    sending command refuses with the variable's name."""
    path = tmp_path / "forwarder.yaml"
    path.write_text(APP_KEY_ONLY)
    args = argparse.Namespace(config=str(path))
    with pytest.raises(ConfigError, match="environment variable NO_SUCH_TOKEN_VAR is not set"):
        load(args)
    config = load(args, require_credentials=False)
    assert not config.targets["bp"].token
