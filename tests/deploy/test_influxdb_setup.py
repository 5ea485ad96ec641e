"""deploy/influxdb/setup.sh against a fake InfluxDB API on loopback: the rule it creates.

Runs the real script with bash, curl and python3, as an operator would; without curl the
tests fail saying so (the script needs it too).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import REPO

SCRIPT = REPO / "deploy" / "influxdb" / "setup.sh"


@pytest.fixture(autouse=True)
def _curl() -> None:
    if shutil.which("curl") is None:
        pytest.fail("deploy/influxdb/setup.sh needs curl: apt-get install curl", pytrace=False)


class FakeInflux:
    """Just enough of InfluxDB's /api/v2 for setup.sh; keeps what was created."""

    def __init__(self, rules: list[dict[str, Any]] | None = None) -> None:
        self.rules = rules or []
        self.endpoints: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v2/orgs", self.orgs)
        app.router.add_get("/api/v2/notificationEndpoints", self.list_endpoints)
        app.router.add_post("/api/v2/notificationEndpoints", self.create_endpoint)
        app.router.add_get("/api/v2/notificationRules", self.list_rules)
        app.router.add_post("/api/v2/notificationRules", self.create_rule)
        return app

    async def orgs(self, request: web.Request) -> web.Response:
        return web.json_response({"orgs": [{"id": "org1", "name": "my-org"}]})

    async def list_endpoints(self, request: web.Request) -> web.Response:
        return web.json_response({"notificationEndpoints": self.endpoints})

    async def create_endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.endpoints.append({**body, "id": "ep1"})
        return web.json_response({**body, "id": "ep1"}, status=201)

    async def list_rules(self, request: web.Request) -> web.Response:
        return web.json_response({"notificationRules": self.rules})

    async def create_rule(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.rules.append({**body, "id": "rule1"})
        return web.json_response({**body, "id": "rule1"}, status=201)


@pytest.fixture
async def influx() -> AsyncIterator[tuple[FakeInflux, str]]:
    fake = FakeInflux()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("/"))
    await server.close()


async def run_setup(url: str, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(SCRIPT),
        env={
            "PATH": os.environ["PATH"],
            "INFLUX_HOST": url,
            "INFLUX_TOKEN": "t",
            "INFLUX_ORG": "my-org",
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_rule_sends_only_state_changes_by_default(influx: tuple[FakeInflux, str]) -> None:
    """Each status rule has previousLevel ANY, so InfluxDB uses monitor.stateChanges."""
    fake, url = influx
    code, out = await run_setup(url)
    assert code == 0, out
    [rule] = fake.rules
    assert rule["statusRules"] == [
        {"currentLevel": level, "previousLevel": "ANY"} for level in ("CRIT", "WARN", "INFO", "OK")
    ]
    assert "sends changes from ANY" in out


async def test_empty_previous_level_sends_every_status(influx: tuple[FakeInflux, str]) -> None:
    """RULE_PREVIOUS_LEVEL= (empty) keeps the every-status rule, for who wants it."""
    fake, url = influx
    code, out = await run_setup(url, RULE_PREVIOUS_LEVEL="", RULE_LEVELS="CRIT")
    assert code == 0, out
    assert fake.rules[0]["statusRules"] == [{"currentLevel": "CRIT"}]


async def test_existing_every_status_rule_gets_a_warning(influx: tuple[FakeInflux, str]) -> None:
    """A rule left by an older setup.sh is not changed, but the script says how to fix it."""
    fake, url = influx
    fake.rules.append(
        {
            "id": "old",
            "name": "forwarder: check status changes",
            "statusRules": [{"currentLevel": "OK"}],
        }
    )
    code, out = await run_setup(url)
    assert code == 0, out
    assert len(fake.rules) == 1
    assert "sends every status on every run" in out
    assert "/api/v2/notificationRules/old" in out
