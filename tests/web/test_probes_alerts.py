"""The alert-state gauges of `GET /metrics` (web.probes.metrics), read at each scrape.

The real app on loopback with a stopped fake clock (so nothing is sent and
the store holds exactly what the test posted), a real SQLite queue, and
alerts posted over HTTP.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import example
from tests.fakes.clock import FakeClock
from tests.web.conftest import Client, Served

CONFIG = """
server:
  listen: 127.0.0.1:0
  shutdown_timeout: 2s
queue:
  path: queue.db
  synchronous: normal
targets:
  bigpanda:
    kind: log
  other:
    kind: log
  quiet:
    kind: log
routes:
  - name: other
    target: other
    match:
      task: other
  - name: default
    target: bigpanda
state:
  flap:
    transitions: 2
    window: 10m
    hold: 5m
"""

Samples = dict[tuple[str, str], float]


def kapacitor(check: str, level: str) -> bytes:
    """A Kapacitor alert-handler body for ``check`` at ``level``."""
    body: dict[str, Any] = json.loads(example("kapacitor-alert-critical.json"))
    body.update(id=check, level=level)
    return json.dumps(body).encode()


async def post(client: Client, path: str, check: str, level: str) -> None:
    resp = await client.post(path, data=kapacitor(check, level))
    assert resp.status == 200, await resp.text()


async def gauges(client: Client) -> Samples:
    """``forwarder_alerts_open`` and ``forwarder_alerts_flapping`` by (name, target)."""
    resp = await client.get("/metrics")
    assert resp.status == 200
    out: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        if family.name in ("forwarder_alerts_open", "forwarder_alerts_flapping"):
            for s in family.samples:
                out[(s.name, s.labels["target"])] = s.value
    return out


def expected(open_: dict[str, int], flapping: dict[str, int]) -> Samples:
    """Every configured target's two gauges, zero unless given."""
    out: Samples = {}
    for target in ("bigpanda", "other", "quiet"):
        out[("forwarder_alerts_open", target)] = open_.get(target, 0)
        out[("forwarder_alerts_flapping", target)] = flapping.get(target, 0)
    return out


async def test_open_and_flapping_gauges_follow_the_store_at_each_scrape(served: Served) -> None:
    """Each scrape reads the counts afresh: firing identities per target, flapping ones,
    and zero for a configured target that has none."""
    client = await served(CONFIG, clock=FakeClock())
    assert await gauges(client) == expected({}, {})

    await post(client, "/kapacitor", "cpu-high", "CRITICAL")
    await post(client, "/kapacitor", "disk-full", "CRITICAL")
    await post(client, "/kapacitor/other", "net-down", "CRITICAL")
    for level in ("CRITICAL", "OK", "CRITICAL", "WARNING"):  # the third change: flapping
        await post(client, "/kapacitor", "mem-flap", level)
    assert await gauges(client) == expected({"bigpanda": 3, "other": 1}, {"bigpanda": 1})

    await post(client, "/kapacitor", "cpu-high", "OK")
    await post(client, "/kapacitor/other", "net-down", "OK")
    assert await gauges(client) == expected({"bigpanda": 2}, {"bigpanda": 1})
