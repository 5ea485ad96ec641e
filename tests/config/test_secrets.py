"""DSN passwords: found in every spelling PostgreSQL accepts, and masked where they stand."""

from __future__ import annotations

from pathlib import Path

import pytest

from forwarder.config import dsn_passwords, mask_dsn, parse_config

DSNS = [
    pytest.param(
        "postgresql://fwd:pa%40ss-1@db:5432/q",
        {"pa%40ss-1", "pa@ss-1"},
        "postgresql://fwd:***@db:5432/q",
        id="url-userinfo-percent-encoded",
    ),
    pytest.param(
        "postgres://fwd@db/q?sslmode=require&password=qp-2",
        {"qp-2"},
        "postgres://fwd@db/q?sslmode=require&password=***",
        id="url-query",
    ),
    pytest.param(
        "postgresql://fwd:h@h1:5432,h2:5432/h",
        {"h"},
        "postgresql://fwd:***@h1:5432,h2:5432/h",
        id="short-password-multi-host",
    ),
    pytest.param(
        "host=db user=fwd password=kw-3 dbname=q",
        {"kw-3"},
        "host=db user=fwd password=*** dbname=q",
        id="keywords",
    ),
    pytest.param(
        "host=db password = 'a b\\' c' dbname=q",
        {"'a b\\' c'", "a b' c"},
        "host=db password = *** dbname=q",
        id="keywords-quoted",
    ),
    pytest.param("postgresql://fwd@db/q", set(), "postgresql://fwd@db/q", id="no-password"),
]


@pytest.mark.parametrize(("dsn", "passwords", "masked"), DSNS)
def test_dsn_password_is_found_and_masked(dsn: str, passwords: set[str], masked: str) -> None:
    """dsn_passwords finds the password as written and decoded; mask_dsn hides it in place."""
    assert set(dsn_passwords(dsn)) == passwords
    assert mask_dsn(dsn) == masked


def test_dsn_password_is_a_config_secret() -> None:
    """The queue DSN's password is among the secrets the log redactor masks."""
    text = (
        "queue:\n  backend: postgres\n  dsn: postgresql://fwd:pg-secret-9@db/q\n"
        "targets:\n  b:\n    kind: log\n"
    )
    cfg = parse_config(text, base_dir=Path("/"), env={})
    assert cfg.queue.backend == "postgres"
    assert cfg.queue.dsn.reveal() == "postgresql://fwd:pg-secret-9@db/q"
    assert "pg-secret-9" in cfg.secrets()
    assert "pg-secret-9" not in repr(cfg)
