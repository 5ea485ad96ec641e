"""A replica's config and the alerts the multi-replica tests post (shared by tests/pg)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tests.conftest import APP_KEY, TOKEN

BASE_TS = 1_700_000_000
LEVELS = ("CRITICAL", "WARNING", "OK", "CRITICAL")


def replica_config(
    url: str,
    dsn: str,
    port: int,
    *,
    rate_limit: float = 10_000,
    burst: int = 10_000,
    max_alerts: int = 100,
    lease_timeout: str = "5s",
) -> str:
    """One replica's config: the shared PostgreSQL queue, the fake BigPanda at ``url``."""
    return f"""
server:
  listen: 127.0.0.1:{port}
  shutdown_timeout: 2s
queue:
  backend: postgres
  dsn: {json.dumps(dsn)}
  lease_timeout: {lease_timeout}
batch:
  max_alerts: {max_alerts}
  linger: 20ms
retry:
  initial: 50ms
  max: 1s
targets:
  bigpanda:
    kind: alerts_v2
    url: {url}
    token: {TOKEN}
    app_key: {APP_KEY}
    rate_limit: {rate_limit}
    burst: {burst}
    max_in_flight: 8
    timeout: 2s
    connect_timeout: 1s
routes:
  - name: default
    target: bigpanda
"""


def alert(identity: int, state: int) -> bytes:
    """Kapacitor's alert JSON for state ``state`` of ``identity`` (a later state, a later time)."""
    ts = datetime.fromtimestamp(BASE_TS + state, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    check = f"chaos-{identity:05d}"
    level = LEVELS[state % len(LEVELS)]
    return json.dumps(
        {
            "id": check,
            "message": f"{check} state {state}",
            "time": ts,
            "duration": 0,
            "level": level,
            "data": {
                "series": [
                    {
                        "name": "cpu",
                        "tags": {"host": "web-1"},
                        "columns": ["time"],
                        "values": [[ts]],
                    }
                ]
            },
        }
    ).encode()
