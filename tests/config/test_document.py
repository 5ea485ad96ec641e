"""Reading a config: which variable filled each key, and secrets known before validation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from forwarder.config import ConfigError, load_config, parse_config, read_text

CREDENTIALS = """
targets:
  bigpanda:
    kind: alerts_v2
    token: ${BIGPANDA_TOKEN:-}
    app_key: ${BIGPANDA_APP_KEY:-}
"""


def test_each_key_remembers_the_variables_it_was_expanded_from() -> None:
    """env_refs maps a key path to the ${VAR}s in its value, defaults included."""
    text = """
    server:
      listen: ${HOST:-127.0.0.1}:${PORT:-9095}
    targets:
      bigpanda:
        kind: log
    mapping:
      attributes:
        plain: no variables here
        escaped: $${NOT_A_VAR}
    """
    doc = read_text(textwrap.dedent(text), base_dir=Path("/"), env={"PORT": "1"})
    assert doc.env_refs == {"server.listen": ("HOST", "PORT")}


def test_secrets_are_known_before_validation() -> None:
    """Secret keys and secret-named variables are collected even when validation will fail."""
    text = """
    queue:
      backend: postgres
      dsn: postgresql://fwd:${PGPASSWORD}@db/fwd
    targets:
      bigpanda:
        kind: alerts_v2
        token: tok-inline-1
        app_key_in: ${MY_SECRET_KEY}
        bogus: 1
    """
    env = {"PGPASSWORD": "pg-pass-2", "MY_SECRET_KEY": "named-secret-3"}
    doc = read_text(textwrap.dedent(text), base_dir=Path("/"), env=env)
    assert {"tok-inline-1", "pg-pass-2", "named-secret-3"} <= set(doc.secrets())
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), base_dir=Path("/"), env=env)
    assert "named-secret-3" not in str(info.value)


def test_empty_credentials_name_the_empty_variables() -> None:
    """In dry-run, empty_credentials() lists each empty key with the variable it came from."""
    cfg = parse_config(CREDENTIALS, base_dir=Path("/"), env={})
    assert cfg.empty_credentials() == [
        "targets.bigpanda.token (from ${BIGPANDA_TOKEN})",
        "targets.bigpanda.app_key (from ${BIGPANDA_APP_KEY})",
    ]


def test_empty_credentials_without_variables_name_the_keys() -> None:
    """A target with no credential keys at all is reported by key path alone."""
    text = "targets:\n  bp:\n    kind: alerts_v2\n"
    cfg = parse_config(text, base_dir=Path("/"), env={})
    assert cfg.empty_credentials() == ["targets.bp.token", "targets.bp.app_key"]


def test_empty_credentials_skip_an_app_key_a_route_provides() -> None:
    """When every route to the target has its own app key, only the token is missing."""
    text = CREDENTIALS + "routes:\n  - name: all\n    app_key: route-key-1\n"
    cfg = parse_config(text, base_dir=Path("/"), env={"BIGPANDA_TOKEN": ""})
    assert cfg.empty_credentials() == ["targets.bigpanda.token (from ${BIGPANDA_TOKEN})"]


def test_empty_credentials_is_empty_when_credentials_are_set() -> None:
    """Nothing to report once the target can send."""
    env = {"BIGPANDA_TOKEN": "t-1", "BIGPANDA_APP_KEY": "k-1"}
    assert parse_config(CREDENTIALS, base_dir=Path("/"), env=env).empty_credentials() == []


def test_render_mode_needs_no_credentials(tmp_path: Path) -> None:
    """require_credentials=False accepts an app key without token, and an unset ${VAR} in a
    secret key, which a sending command refuses."""
    path = tmp_path / "forwarder.yaml"
    path.write_text(
        "targets:\n  bp:\n    kind: alerts_v2\n    token: ${UNSET_TOKEN}\n    app_key: k-123\n"
    )
    with pytest.raises(ConfigError, match=r"targets\.bp\.token: environment variable UNSET_TOKEN"):
        load_config(path, env={})
    cfg = load_config(path, env={}, require_credentials=False)
    assert not cfg.targets["bp"].token
    assert cfg.targets["bp"].app_key.reveal() == "k-123"


def test_render_mode_still_needs_other_variables(tmp_path: Path) -> None:
    """Only secret keys are lenient: an unset variable elsewhere stays an error."""
    text = "server:\n  listen: ${UNSET_LISTEN}\ntargets:\n  bp:\n    kind: log\n"
    with pytest.raises(ConfigError, match=r"server\.listen: environment variable UNSET_LISTEN"):
        parse_config(text, base_dir=tmp_path, env={}, require_credentials=False)


def test_missing_config_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    """A missing file's error names --config, FORWARDER_CONFIG and `forwarder init`."""
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, env={})
    text = str(info.value)
    assert text.startswith(f"cannot read config file {missing}: No such file or directory")
    assert "--config FILE" in text
    assert "FORWARDER_CONFIG" in text
    assert f"forwarder init {missing}" in text


def test_token_file_contents_are_masked_in_errors(tmp_path: Path) -> None:
    """A secret read from a file and pasted elsewhere by mistake is masked too."""
    (tmp_path / "token").write_text("file-token-77\n")
    text = (
        "targets:\n  bp:\n    kind: oim\n    token_file: token\n    app_key: k-1\n"
        "    token_in: file-token-77\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, base_dir=tmp_path, env={})
    assert str(info.value) == (
        "targets.bp.token_in: must be one of authorization, x-auth-token, got '***'"
    )


def test_a_short_setting_in_a_secret_named_variable_is_not_a_secret() -> None:
    """APP_KEY_IN=body is a setting, not a secret: "body" must not be masked in messages."""
    text = """
    targets:
      bigpanda:
        kind: alerts_v2
        app_key_in: ${MY_APP_KEY_IN}
    """
    doc = read_text(textwrap.dedent(text), base_dir=Path("/"), env={"MY_APP_KEY_IN": "body"})
    assert "body" not in doc.secrets()
