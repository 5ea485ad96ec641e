"""The ``targets`` section, and the credential rules that span targets and routes.

A credential error names the environment variable that was empty, e.g.
``targets.bigpanda.token: is empty (from ${BIGPANDA_TOKEN}) …``, because an
unset variable is the usual cause and the key alone does not say which.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from forwarder.config.convert import (
    Section,
    as_duration,
    as_int,
    as_positive_float,
    as_str,
    as_url,
    one_of,
)
from forwarder.config.errors import ConfigError
from forwarder.config.schema import (
    APP_KEY_PLACES,
    DEFAULT_OIM_URL,
    DEFAULT_V2_URL,
    TARGET_KINDS,
    TOKEN_PLACES,
    RouteConfig,
    TargetConfig,
)
from forwarder.config.secrets import Secret
from forwarder.config.sections import Context

_DEFAULT_URLS: Mapping[str, str] = {"alerts_v2": DEFAULT_V2_URL, "oim": DEFAULT_OIM_URL}


def targets(ctx: Context, node: Any) -> dict[str, TargetConfig]:
    if node is None or node == {}:
        raise ConfigError("targets", "at least one target is required")
    sec = Section(node, "targets")
    out: dict[str, TargetConfig] = {}
    for name in list(sec.node):
        sec.raw(name)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ConfigError(sec.key(name), "target names use letters, digits, _ . - only")
        out[name] = target(ctx, name, sec.node[name])
    return out


def target(ctx: Context, name: str, node: Any) -> TargetConfig:
    sec = Section(node, f"targets.{name}")
    if not sec.has("kind"):
        raise ConfigError(sec.key("kind"), f"is required (one of {', '.join(TARGET_KINDS)})")
    kind = one_of(TARGET_KINDS)(sec.raw("kind"), sec.key("kind"))
    if kind == "log":
        url = sec.get("url", as_str, "")
    else:
        url = sec.get("url", as_url, _DEFAULT_URLS[kind])
    token = ctx.secret(sec, "token", "token_file")
    app_key = Secret(sec.get("app_key", as_str, ""))
    d = TargetConfig
    token_in = sec.get("token_in", one_of(TOKEN_PLACES), d.token_in)
    app_key_in = sec.get("app_key_in", one_of(APP_KEY_PLACES), d.app_key_in)
    if kind != "oim":
        if token_in != d.token_in:
            raise ConfigError(sec.key("token_in"), f"only an oim target can use {token_in}")
        if app_key_in != d.app_key_in:
            raise ConfigError(sec.key("app_key_in"), "only an oim target can send x-app-key")
    cfg = TargetConfig(
        name=name,
        kind=kind,
        url=url,
        token=token,
        app_key=app_key,
        token_in=token_in,
        app_key_in=app_key_in,
        timeout=sec.get("timeout", as_duration(0.01), d.timeout),
        connect_timeout=sec.get("connect_timeout", as_duration(0.01), d.connect_timeout),
        rate_limit=sec.get("rate_limit", as_positive_float, d.rate_limit),
        burst=sec.get("burst", as_int(1, 10_000), d.burst),
        max_in_flight=sec.get("max_in_flight", as_int(1, 256), d.max_in_flight),
    )
    sec.finish()
    return cfg


def check_credentials(
    ctx: Context, targets: Mapping[str, TargetConfig], routes: tuple[RouteConfig, ...]
) -> None:
    """Either every BigPanda target has credentials, or none has (dry-run)."""
    remote = [t for t in targets.values() if t.kind != "log"]
    configured = [t for t in remote if t.has_credentials]
    for t in configured:
        if not t.token:
            key = f"targets.{t.name}.token"
            where = (
                f"the file in {key}_file is empty"
                if key in ctx.file_keys
                else f"is empty{ctx.from_env(key)}"
            )
            raise ConfigError(
                key,
                f"{where} but targets.{t.name}.app_key is set; set the token"
                " (or token_file), or clear both for dry-run",
            )
    if configured and len(configured) != len(remote):
        missing = next(t for t in remote if not t.has_credentials)
        keys = [f"targets.{missing.name}.{k}" for k in ("token", "app_key")]
        empty = ", ".join(k.rpartition(".")[2] + ctx.from_env(k) for k in keys)
        raise ConfigError(
            keys[0],
            f"has no credentials while other targets do ({empty} empty);"
            " set them or remove the target",
        )
    for r in routes:
        t = targets[r.target]
        if t.kind != "log" and t.has_credentials and not r.app_key:
            key = f"{r.key_path}.app_key"
            target_key = f"targets.{t.name}.app_key"
            raise ConfigError(
                key,
                f"empty{ctx.from_env(key)}, and {target_key} is empty too"
                f"{ctx.from_env(target_key)}; BigPanda needs an app key",
            )
