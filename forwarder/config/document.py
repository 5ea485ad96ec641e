"""Reading a config file: YAML, ``${ENV}`` expansion with provenance, and secrets found early.

This is the first half of loading. It yields a :class:`Document`: the
expanded YAML tree, which environment variables each key path was expanded
from (so an error about an empty credential can name its variable), and
every value that looks like a secret. Those are known *before* the tree is
validated, so a reload can register a new token with the log redactor, and
an error quoting a value can mask it, before any message is written
(issue 11: a bad reload echoed the new token).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from forwarder.config.convert import join
from forwarder.config.errors import ConfigError
from forwarder.config.secrets import dsn_passwords

# Keys whose values are secrets, wherever they stand (targets, routes, server.auth, queue).
SECRET_KEYS: Final = frozenset({"token", "app_key", "bearer_token", "password", "dsn"})
# An environment variable named like this holds a secret even when it fills another key
# (``app_key_in: ${BIGPANDA_TOKEN}`` by mistake must not print the token).
_SECRET_ENV_NAME = re.compile(r"TOKEN|KEY|PASSW|SECRET|DSN|CREDENTIAL", re.IGNORECASE)
# Only a value this long is taken for a secret by its variable's name alone, so a
# setting such as APP_KEY_IN=body does not get masked wherever "body" appears.
_MIN_GUESSED_SECRET = 8
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


@dataclass(frozen=True)
class Document:
    """A config file read and expanded, not yet validated."""

    tree: Any
    digest: str
    base_dir: Path
    source_path: Path | None
    env: Mapping[str, str]
    env_refs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    secret_values: tuple[str, ...] = ()
    # Whether an unset ${VAR} in a secret key reads as empty (``render`` needs no token).
    lenient_secrets: bool = False

    def secrets(self) -> list[str]:
        """Every value that is or may be a secret, for masking before validation."""
        return list(self.secret_values)


def read_file(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    require_credentials: bool = True,
) -> Document:
    """Read and expand the config file at ``path``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError("", _unreadable(p, exc)) from None
    return read_text(
        data,
        base_dir=p.resolve().parent,
        source_path=p,
        env=env,
        require_credentials=require_credentials,
    )


def _unreadable(p: Path, exc: OSError) -> str:
    """Why ``p`` cannot be read, and how to point at another config file."""
    text = f"cannot read config file {p}: {exc.strerror}"
    if isinstance(exc, FileNotFoundError):
        text += (
            "; pass --config FILE or set FORWARDER_CONFIG, or write the default config"
            f" with `forwarder init {p}`"
        )
    return text


def read_text(
    data: bytes | str,
    *,
    base_dir: Path,
    source_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    require_credentials: bool = True,
) -> Document:
    """Parse YAML text and expand ``${VAR}`` in it; ``base_dir`` anchors relative paths."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        tree = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError("", f"invalid YAML: {where}{problem}") from None
    environ = os.environ if env is None else env
    expander = _Expander(environ, lenient_secrets=not require_credentials)
    tree = expander.expand({} if tree is None else tree, "")
    return Document(
        tree=tree,
        digest=hashlib.sha256(raw).hexdigest(),
        base_dir=base_dir,
        source_path=source_path,
        env=environ,
        env_refs=expander.refs,
        secret_values=tuple(sorted(expander.secrets, key=len, reverse=True)),
        lenient_secrets=not require_credentials,
    )


class _Expander:
    """Expands ``${VAR}``, ``${VAR:-default}`` and ``$$`` in every string scalar.

    It records which variables each key path used, and collects the values of
    secret keys and of secret-named variables.
    """

    def __init__(self, env: Mapping[str, str], *, lenient_secrets: bool) -> None:
        self.env = env
        self.lenient_secrets = lenient_secrets
        self.refs: dict[str, tuple[str, ...]] = {}
        self.secrets: set[str] = set()

    def expand(self, node: Any, path: str) -> Any:
        if isinstance(node, str):
            value = self._expand_str(node, path) if "$" in node else node
            if path.rpartition(".")[2] in SECRET_KEYS:
                self._add_secret(value, dsn=path.endswith("dsn"))
            return value
        if isinstance(node, dict):
            return {k: self.expand(v, join(path, str(k))) for k, v in node.items()}
        if isinstance(node, list):
            return [self.expand(v, f"{path}[{i}]") for i, v in enumerate(node)]
        return node

    def _expand_str(self, text: str, path: str) -> str:
        names: list[str] = []
        is_secret = path.rpartition(".")[2] in SECRET_KEYS

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            names.append(name)
            value = self.env.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    if is_secret and self.lenient_secrets:
                        return ""
                    raise ConfigError(path, f"environment variable {name} is not set")
                return default
            if _SECRET_ENV_NAME.search(name) and len(value) >= _MIN_GUESSED_SECRET:
                self._add_secret(value, dsn="DSN" in name.upper())
            return value

        out = _ENV_REF.sub(sub, text)
        if names:
            self.refs[path] = tuple(dict.fromkeys(names))
        return out

    def _add_secret(self, value: str, *, dsn: bool) -> None:
        if dsn:
            self.secrets.update(dsn_passwords(value))
        elif value:
            self.secrets.add(value)
