"""One sender per target across processes that share a queue: the claim, and take-over.

Two deliverers, each on its own connection to one real PostgreSQL queue, stand
for two replicas; the fake BigPanda is real HTTP on loopback. The rate limit and
``max_in_flight`` hold for the deployment because only the claim holder sends.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from forwarder.config import Config, load_config
from forwarder.delivery.deliverer import Deliverer
from forwarder.obs.metrics import Metrics
from forwarder.pipeline import Pipeline
from forwarder.queue import Queue, create_queue
from tests.conftest import example, target_config, write_config
from tests.fakes.bigpanda import FakeBigPanda


def postgres_config(tmp_path: Path, url: str, dsn: str) -> Config:
    """The test target config with its queue in the PostgreSQL database ``dsn``."""
    doc = yaml.safe_load(target_config(url))
    doc["queue"] = {"backend": "postgres", "dsn": dsn}
    return load_config(write_config(tmp_path, yaml.safe_dump(doc)))


class Replica:
    """A queue connection and a deliverer with metrics of its own: one replica's sending side."""

    def __init__(self, config: Config, name: str) -> None:
        self.config = config
        self.queue: Queue = create_queue(config.queue)
        self.registry = CollectorRegistry()
        self.deliverer = Deliverer(
            self.queue, Metrics(self.registry), force_dry_run=False, replica=name
        )

    async def start(self) -> None:
        await self.queue.open()
        await self.deliverer.start(self.config)

    async def stop(self) -> None:
        await self.deliverer.stop(timeout=5)
        await self.queue.close()

    def sample(self, name: str) -> float:
        return self.registry.get_sample_value(name, {"target": "bigpanda"}) or 0.0


@pytest.fixture
async def replicas(
    tmp_path: Path, fake_bigpanda: FakeBigPanda, postgres_dsn: str
) -> AsyncIterator[tuple[Replica, Replica]]:
    config = postgres_config(tmp_path, fake_bigpanda.alerts_url, postgres_dsn)
    pair = (Replica(config, "a"), Replica(config, "b"))
    yield pair
    for r in pair:
        if r.queue.is_open:
            await r.stop()


async def put_alerts(replica: Replica, prefix: str, n: int) -> None:
    """Queue ``n`` distinct alerts through ``replica``'s queue, as its ingest would."""
    pipeline = Pipeline(replica.config)
    body = json.loads(example("kapacitor-alert-critical.json"))
    items = []
    for i in range(n):
        body["id"] = f"{prefix}-{i}"
        items.extend(pipeline.process("kapacitor", body).items)
    await replica.queue.put(items)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``predicate`` with a deadline (the sender counts a delivery after the answer)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not true after {timeout}s: {what}"
        await asyncio.sleep(0.02)


def checks(fake: FakeBigPanda, prefix: str) -> set[str]:
    return {
        str(r.alert["check"]) for r in fake.received if str(r.alert["check"]).startswith(prefix)
    }


async def test_only_the_claim_holder_sends_and_another_takes_over_when_it_stops(
    replicas: tuple[Replica, Replica], fake_bigpanda: FakeBigPanda
) -> None:
    a, b = replicas
    await a.start()
    await b.start()
    await put_alerts(b, "first", 20)  # queued through b; still sent by the holder, a
    await fake_bigpanda.wait_for(lambda f: len(checks(f, "first")) == 20, timeout=20)
    delivered = "forwarder_alerts_delivered_total"
    await until(lambda: a.sample(delivered) + b.sample(delivered) == 20, "20 counted delivered")
    holder, other = (a, b) if a.sample("forwarder_target_sending") == 1 else (b, a)
    assert holder.sample("forwarder_target_sending") == 1
    assert other.sample("forwarder_target_sending") == 0
    assert holder.sample(delivered) == 20
    assert other.sample(delivered) == 0

    # The holder stops (a rolling restart): it gives the claim up and the other takes over.
    await holder.stop()
    await put_alerts(other, "second", 10)
    await fake_bigpanda.wait_for(lambda f: len(checks(f, "second")) == 10, timeout=20)
    await until(lambda: other.sample(delivered) == 10, "10 counted delivered after take-over")
    assert other.sample("forwarder_target_sending") == 1
