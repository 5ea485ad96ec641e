"""Loading: a read :class:`~forwarder.config.document.Document` built into a :class:`Config`.

Loading is strict: an unknown key, a wrong type or a broken cross-field rule
raises :class:`ConfigError`, whose text is one line naming the key path, e.g.
``targets.bigpanda.url: not a URL``. Relative paths resolve against the folder
of the config file, so a config and its templates can move together.

Any secret the document holds (or a ``*_file`` key read) is masked in the
error text, so a value quoted by mistake (``app_key_in: ${BIGPANDA_TOKEN}``)
never reaches a terminal, a log or an HTTP answer.

The sections live in :mod:`~forwarder.config.sections` (server, ingest,
queue, batch, retry, log), :mod:`~forwarder.config.targets` (targets and the
credential rules) and :mod:`~forwarder.config.routes` (mapping and routes).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from forwarder.config import sections
from forwarder.config.convert import Section
from forwarder.config.document import Document, read_file, read_text
from forwarder.config.errors import ConfigError
from forwarder.config.routes import read_mapping, read_routes
from forwarder.config.schema import Config
from forwarder.config.state import read_state
from forwarder.config.targets import check_credentials, targets

# Shorter values are not masked inside error prose: "k" would garble "unknown key".
MIN_MASKED_LENGTH = 4


def load_config(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    require_credentials: bool = True,
) -> Config:
    """Read, expand and validate the config file at ``path``.

    ``require_credentials=False`` is for commands that never send (``render``):
    the credential rules are skipped, and an unset ``${VAR}`` in a secret key
    reads as empty instead of being an error.
    """
    return build_config(read_file(path, env, require_credentials=require_credentials))


def parse_config(
    data: bytes | str,
    *,
    base_dir: Path,
    source_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    require_credentials: bool = True,
) -> Config:
    """Validate config text; ``base_dir`` anchors relative paths."""
    doc = read_text(
        data,
        base_dir=base_dir,
        source_path=source_path,
        env=env,
        require_credentials=require_credentials,
    )
    return build_config(doc)


def build_config(doc: Document) -> Config:
    """Validate a read document; every error's text has the document's secrets masked."""
    ctx = sections.Context(doc.base_dir, doc.env, doc.env_refs)
    try:
        return _build(doc, ctx)
    except ConfigError as exc:
        raise mask(exc, [*doc.secrets(), *ctx.file_secrets]) from None
    except (ValueError, RuntimeError, UnicodeError) as exc:
        # A value no check foresaw (a path the OS refuses, say): still one line.
        refused = ConfigError("", f"cannot use this config: {type(exc).__name__}: {exc}")
        raise mask(refused, [*doc.secrets(), *ctx.file_secrets]) from None


def mask(exc: ConfigError, secrets: Iterable[str]) -> ConfigError:
    """``exc`` with each secret value in its text replaced by ``***``."""
    path, message = exc.path, exc.message
    for s in sorted(set(secrets), key=len, reverse=True):
        if len(s) >= MIN_MASKED_LENGTH:
            path, message = path.replace(s, "***"), message.replace(s, "***")
    return exc if (path, message) == (exc.path, exc.message) else ConfigError(path, message)


def _build(doc: Document, ctx: sections.Context) -> Config:
    top = Section(doc.tree, "")
    server = sections.server(ctx, top.raw("server"))
    ingest = sections.ingest(top.raw("ingest"))
    queue = sections.queue(ctx, top.raw("queue"))
    batch = sections.batch(top.raw("batch"))
    retry = sections.retry(top.raw("retry"))
    by_name = targets(ctx, top.raw("targets"))
    mapping = read_mapping(top.raw("mapping"), "mapping", base=None)
    state = read_state(top.raw("state"), "state", base=None)
    routes = read_routes(top.raw("routes"), by_name, mapping, state)
    log = sections.log(top.raw("log"))
    top.finish()
    if not doc.lenient_secrets:
        check_credentials(ctx, by_name, routes)
    return Config(
        server=server,
        ingest=ingest,
        queue=queue,
        batch=batch,
        retry=retry,
        targets=by_name,
        mapping=mapping,
        routes=routes,
        log=log,
        state=state,
        source_path=doc.source_path,
        digest=doc.digest,
        env_refs=doc.env_refs,
    )
