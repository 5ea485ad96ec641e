#!/usr/bin/env python3
"""Container health check: GET /-/healthy on the forwarder's own listener.

Used by the Dockerfile's HEALTHCHECK (python:3.11-slim has no curl). Exits 0
when the endpoint answers 2xx, 1 otherwise.

The URL comes from FORWARDER_HEALTHCHECK_URL when set (use it when the
listener serves TLS or the config sets server.listen to something other than
FORWARDER_LISTEN); else it is built from FORWARDER_LISTEN (default
127.0.0.1:9095), with a wildcard host (0.0.0.0, ::, empty) replaced by loopback.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping


def healthcheck_url(environ: Mapping[str, str] = os.environ) -> str:
    explicit = environ.get("FORWARDER_HEALTHCHECK_URL")
    if explicit:
        return explicit
    listen = environ.get("FORWARDER_LISTEN") or "127.0.0.1:9095"
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port or '9095'}/-/healthy"


def main() -> int:
    url = healthcheck_url()
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            ok = 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"unhealthy: {url}: HTTP {resp.status}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
