"""The dead-letter admin: ``forwarder dlq`` as real subprocesses, and the HTTP admin API.

The HTTP section at the end checks that the admin API refuses bad ids and
limits with a JSON 400 (its body handling is in ``test_body.py``).

The dead letters are made by the real pipeline (Kapacitor example bodies mapped
with the test config) and the real queue, then the CLI is run against the same
config file. Its output names each dead letter's id, target, reason, status,
attempts, age and check, and never a secret.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from forwarder.config import QueueConfig
from forwarder.model import Outgoing
from forwarder.pipeline import Pipeline
from forwarder.queue.sqlite import SQLiteQueue
from tests.conftest import (
    ALERT_STATE_CONFIG,
    APP_KEY,
    TOKEN,
    example,
    forwarder_cli,
    make_config,
    target_config,
    write_config,
)
from tests.fakes.clock import FakeClock
from tests.web.conftest import Client, Served, exchange

DAY = 86400.0


def outgoing(tmp_path: Path, text: str, check: str) -> Outgoing:
    """The queue item the real pipeline makes from a Kapacitor example with id ``check``."""
    body: dict[str, Any] = json.loads(example("kapacitor-alert-critical.json"))
    body["id"] = check
    pipeline = Pipeline(make_config(tmp_path, text))
    (item,) = pipeline.process("kapacitor", body).items
    return item


# (check, reason, status, failed attempts before the dead letter, days ago)
DEAD = [
    ("cpu-high", "clientError", 400, 0, 8.0),
    ("disk-full", "authError", 401, 0, 0.0),
    ("mem-low", "expired", 503, 2, 0.0),
    ("net-down", "connection", None, 1, 0.0),
]


@pytest.fixture
async def dlq_config(tmp_path: Path) -> Path:
    """A config file whose queue holds the ``DEAD`` dead letters (one failed 8 days ago)."""
    text = target_config("http://127.0.0.1:9/data/v2/alerts")
    path = write_config(tmp_path, text)
    clock = FakeClock(time.time() - 8 * DAY)
    queue = SQLiteQueue(QueueConfig(path=tmp_path / "queue.db", synchronous="normal"), clock=clock)
    await queue.open()
    try:
        for check, reason, status, retries, days_ago in DEAD:
            clock.advance(time.time() - days_ago * DAY - clock.time())
            await queue.put([outgoing(tmp_path, text, check)])
            for _ in range(retries):
                entries = (await queue.lease("bigpanda", limit=1, lease_for=60)).entries
                await queue.retry_later(entries, at=clock.time(), error="HTTP 503")
            entries = (await queue.lease("bigpanda", limit=1, lease_for=60)).entries
            assert entries[0].app_key == APP_KEY
            await queue.dead_letter(
                entries,
                reason=reason,
                status=status,
                response=f'{{"status":"error","message":"{reason}"}}',
                error=f"HTTP {status}" if status else "ClientConnectorError: refused",
            )
    finally:
        await queue.close()
    return path


async def dlq(config: Path, *args: str) -> tuple[int, str]:
    """Run ``forwarder dlq ARGS --config CONFIG``; return the exit code and all output."""
    code, text = await forwarder_cli(config, "dlq", *args)
    assert TOKEN not in text
    assert APP_KEY not in text
    return code, text


def table(out: str) -> list[list[str]]:
    """The rows of ``dlq list`` split into columns (the header line dropped)."""
    lines = out.strip().splitlines()
    assert lines[0].split() == ["ID", "TARGET", "REASON", "STATUS", "ATTEMPTS", "AGE", "CHECK"]
    return [ln.split() for ln in lines[1:]]


def counts(config: Path) -> tuple[int, int]:
    """Alerts in the queue and in the dead-letter store."""
    with sqlite3.connect(config.parent / "queue.db") as conn:
        q = conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
        d = conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
    return int(q), int(d)


def ids(config: Path) -> dict[str, int]:
    """Dead-letter id by the alert's check."""
    with sqlite3.connect(config.parent / "queue.db") as conn:
        rows = conn.execute("SELECT id, json_extract(payload, '$.check') FROM dead_letters")
        return {check: int(i) for i, check in rows}


async def test_list_shows_one_line_per_dead_letter_with_every_field(dlq_config: Path) -> None:
    """``dlq list`` prints id, target, reason, status, attempts, age and check, newest first."""
    code, out = await dlq(dlq_config, "list")
    assert code == 0, out
    by_check = ids(dlq_config)
    rows = table(out)
    assert [r[6] for r in rows] == ["net-down", "mem-low", "disk-full", "cpu-high"]
    want = {
        "cpu-high": ("clientError", "400", "1"),
        "disk-full": ("authError", "401", "1"),
        "mem-low": ("expired", "503", "3"),
        "net-down": ("connection", "-", "2"),
    }
    for dl_id, target, reason, status, attempts, age, check in rows:
        assert int(dl_id) == by_check[check]
        assert target == "bigpanda"
        assert (reason, status, attempts) == want[check]
        assert re.fullmatch(r"\d+(s|m\d+s|h\d+m|d\d+h)", age), age
    ages = {r[6]: r[5] for r in rows}
    assert ages["cpu-high"].startswith("8d")
    assert re.fullmatch(r"\d+s", ages["disk-full"])


async def test_list_narrows_by_target_and_limit_and_speaks_json(dlq_config: Path) -> None:
    """``--limit`` caps the lines, ``--target`` filters, and ``--json`` gives the same fields."""
    code, out = await dlq(dlq_config, "list", "--limit", "2")
    assert code == 0, out
    assert [r[6] for r in table(out)] == ["net-down", "mem-low"]

    code, out = await dlq(dlq_config, "list", "--target", "elsewhere")
    assert (code, out.strip()) == (0, "no dead letters")

    code, out = await dlq(dlq_config, "list", "--json")
    assert code == 0, out
    items = json.loads(out)
    assert {tuple(sorted(i)) for i in items} == {
        ("age_seconds", "attempts", "check", "id", "reason", "status", "target")
    }
    assert [i["check"] for i in items] == ["net-down", "mem-low", "disk-full", "cpu-high"]
    assert items[1]["status"] == 503
    assert items[0]["status"] is None


async def test_show_prints_the_alert_and_bigpandas_answer(dlq_config: Path) -> None:
    """``dlq show ID`` prints the whole dead letter: alert, response, error and times."""
    dl_id = ids(dlq_config)["disk-full"]
    code, out = await dlq(dlq_config, "show", str(dl_id))
    assert code == 0, out
    detail = json.loads(out)
    assert detail["id"] == dl_id
    assert (detail["reason"], detail["status"], detail["check"]) == ("authError", 401, "disk-full")
    assert detail["alert"]["check"] == "disk-full"
    assert detail["alert"]["host"] == "serverA"
    assert "app_key" not in detail["alert"]
    assert detail["response"] == '{"status":"error","message":"authError"}'
    assert detail["last_error"] == "HTTP 401"
    assert detail["failed_at"] >= detail["created"]


async def test_show_of_an_unknown_id_fails(dlq_config: Path) -> None:
    """``dlq show`` of an id that does not exist exits 1 with a one-line error."""
    code, out = await dlq(dlq_config, "show", "99999")
    assert code == 1
    assert out.strip() == "forwarder: error: no dead letter 99999"


async def test_replay_by_id_requeues_only_that_one(dlq_config: Path) -> None:
    """``dlq replay ID`` moves that dead letter back into the queue and leaves the rest."""
    dl_id = ids(dlq_config)["mem-low"]
    code, out = await dlq(dlq_config, "replay", str(dl_id))
    assert code == 0, out
    assert out.startswith("replayed 1 dead letter(s)")
    assert counts(dlq_config) == (1, 3)
    assert "mem-low" not in ids(dlq_config)
    with sqlite3.connect(dlq_config.parent / "queue.db") as conn:
        app_key, attempts = conn.execute("SELECT app_key, attempts FROM queue").fetchone()
    assert (app_key, attempts) == (APP_KEY, 0)  # the app key travels with it; attempts restart


async def test_replay_all_and_by_target(dlq_config: Path) -> None:
    """``--all --target`` replays nothing for an unknown target; ``--all`` replays everything."""
    code, out = await dlq(dlq_config, "replay", "--all", "--target", "elsewhere")
    assert (code, out.split(" dead")[0]) == (0, "replayed 0")
    code, out = await dlq(dlq_config, "replay", "--all")
    assert code == 0, out
    assert out.startswith("replayed 4 dead letter(s)")
    assert counts(dlq_config) == (4, 0)
    code, out = await dlq(dlq_config, "list")
    assert (code, out.strip()) == (0, "no dead letters")


async def test_replay_without_ids_or_all_is_a_usage_error(dlq_config: Path) -> None:
    """``dlq replay`` with neither IDs nor ``--all`` exits 2 and changes nothing."""
    code, out = await dlq(dlq_config, "replay")
    assert code == 2
    assert "--all" in out
    assert counts(dlq_config) == (0, 4)


async def test_purge_by_id_and_by_age(dlq_config: Path) -> None:
    """``dlq purge ID`` deletes that one; ``--older-than 7d`` deletes only week-old failures."""
    by_check = ids(dlq_config)
    code, out = await dlq(dlq_config, "purge", str(by_check["net-down"]))
    assert (code, out.strip()) == (0, "purged 1 dead letter(s)")
    code, out = await dlq(dlq_config, "purge", "--older-than", "7d")
    assert (code, out.strip()) == (0, "purged 1 dead letter(s)")
    assert sorted(ids(dlq_config)) == ["disk-full", "mem-low"]
    assert counts(dlq_config) == (0, 2)


async def test_purge_needs_ids_or_a_valid_age(dlq_config: Path) -> None:
    """``dlq purge`` without arguments, or with a bad duration, exits 2 and deletes nothing."""
    code, out = await dlq(dlq_config, "purge")
    assert code == 2
    assert "--older-than" in out
    code, out = await dlq(dlq_config, "purge", "--older-than", "a week")
    assert code == 2
    assert "--older-than" in out
    assert counts(dlq_config) == (0, 4)


async def test_dlq_without_a_queue_file_explains(tmp_path: Path) -> None:
    """With no queue database yet, ``dlq list`` exits 1 and says the daemon never ran."""
    config = write_config(tmp_path, target_config("http://127.0.0.1:9/data/v2/alerts"))
    code, out = await dlq(config, "list")
    assert code == 1
    assert "has the daemon ever run with this config?" in out
    assert not (tmp_path / "queue.db").exists()


# --------------------------------------------------------------------------- the HTTP admin API


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/dead-letters/9223372036854775808",  # one past the largest row id
        "/api/v1/dead-letters/" + "9" * 5000,
        "/api/v1/dead-letters/0",
        "/api/v1/dead-letters/-1",
        "/api/v1/dead-letters/%C2%B2",  # "²": a digit to str.isdigit, not to int()
        "/api/v1/dead-letters/%D9%A3",  # Arabic-Indic three: int() would take it
        "/api/v1/dead-letters/1_0",
        "/api/v1/dead-letters/%2B7",
        "/api/v1/dead-letters/%FF",
        "/api/v1/dead-letters?limit=%C2%B2",
        "/api/v1/dead-letters?limit=" + "9" * 5000,
        "/api/v1/dead-letters?limit=100001",
        "/api/v1/dead-letters?limit=0",
        "/api/v1/dead-letters?limit=%FF",
        "/api/v1/dead-letters?limit=",
        "/api/v1/dead-letters?limit=%20%207",
    ],
)
async def test_bad_ids_and_limits_are_a_json_400(served: Served, path: str) -> None:
    """Out-of-range or non-ASCII numbers are refused saying what is allowed, never a 500."""
    client = await served()
    raw = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    status, headers, body = await exchange(client, raw)
    assert status == 400, body
    assert headers["content-type"].startswith("application/json")
    assert "must be a whole number from 1 to" in json.loads(body)["error"]


async def test_the_largest_id_and_limit_are_valid(served: Served) -> None:
    client = await served()
    largest = 2**63 - 1
    resp = await client.get(f"/api/v1/dead-letters/{largest}")
    assert (resp.status, await resp.json()) == (404, {"error": f"no dead letter {largest}"})
    resp = await client.get("/api/v1/dead-letters", params={"limit": "100000"})
    assert (resp.status, await resp.json()) == (200, {"dead_letters": []})


@pytest.mark.parametrize("action", ["replay", "purge"])
@pytest.mark.parametrize(
    ("ids", "error"),
    [
        pytest.param([2**63], "ids: must be a list of whole numbers from 1 to", id="past-int64"),
        pytest.param([10**400], "invalid JSON", id="10e400"),
        pytest.param([0], "ids: must be a list of whole numbers from 1 to", id="zero"),
        pytest.param([True], "ids: must be a list of whole numbers from 1 to", id="bool"),
        pytest.param(list(range(1, 40_002)), "ids: at most 10000 per request", id="40001-ids"),
    ],
)
async def test_replay_and_purge_refuse_ids_the_store_cannot_take(
    served: Served, action: str, ids: list[int], error: str
) -> None:
    """Ids past 64 bits or more ids than one query can bind are a JSON 400, not a 500."""
    client = await served()
    resp = await client.post(
        f"/api/v1/dead-letters/{action}", data=json.dumps({"ids": ids}).encode()
    )
    assert resp.status == 400
    assert (await resp.json())["error"].startswith(error)


@pytest.mark.parametrize(
    "older_than",
    [
        pytest.param(b"[" * 1000 + b"1" + b"]" * 1000, id="list-nested-1000-deep"),
        pytest.param(b'{"d": 7}', id="object"),
        pytest.param(b"7", id="number"),
    ],
)
async def test_purge_older_than_must_be_a_duration_string(
    served: Served, older_than: bytes
) -> None:
    """A non-string age (the fuzzer sent a list nested 1000 deep: a 500) is a JSON 400."""
    client = await served()
    body = b'{"older_than": ' + older_than + b"}"
    resp = await client.post("/api/v1/dead-letters/purge", data=body)
    assert resp.status == 400
    assert (await resp.json())["error"].startswith("older_than: must be a duration string")


# --------------------------------------------------------------------------- the alert-state API

START = 1_700_000_000.0

ALERTS_CONFIG = (
    """
server:
  listen: 127.0.0.1:0
  shutdown_timeout: 2s"""
    + ALERT_STATE_CONFIG
)


def kapacitor(check: str, level: str, host: str = "serverA") -> bytes:
    """A Kapacitor alert-handler body for ``check`` on ``host`` at ``level``."""
    body: dict[str, Any] = json.loads(example("kapacitor-alert-critical.json"))
    body.update(id=check, level=level)
    body["data"]["series"][0]["tags"]["host"] = host
    return json.dumps(body).encode()


@pytest.fixture
async def alerts_client(served: Served) -> Client:
    """The app with four identities in the store, posted at known times (the clock is
    stopped: senders never send), most recently seen first:

    cpu-high (firing, one repeat suppressed), net-down (firing, target ``other``),
    flappy (ok, flapping), disk-ok (ok).
    """
    clock = FakeClock(START)
    client = await served(ALERTS_CONFIG, clock=clock)

    async def post(path: str, body: bytes, answer: dict[str, int]) -> None:
        resp = await client.post(path, data=body)
        assert (resp.status, await resp.json()) == (200, answer)

    sent = {"accepted": 1, "suppressed": 0}
    await post("/kapacitor", kapacitor("cpu-high", "CRITICAL"), sent)
    clock.advance(10)
    await post("/kapacitor", kapacitor("disk-ok", "OK", host="serverB"), sent)
    clock.advance(10)
    for level in ("CRITICAL", "OK", "CRITICAL", "OK"):  # the third change: flapping
        await post("/kapacitor", kapacitor("flappy", level, host="serverC"), sent)
        clock.advance(1)
    clock.advance(10)
    await post("/kapacitor/other", kapacitor("net-down", "CRITICAL", host="serverD"), sent)
    clock.advance(10)
    await post("/kapacitor", kapacitor("cpu-high", "CRITICAL"), {"accepted": 0, "suppressed": 1})
    return client


async def alert_list(client: Client, query: str = "") -> list[dict[str, Any]]:
    """``GET /api/v1/alerts?QUERY``: the list, after checking the answer's shape."""
    resp = await client.get(f"/api/v1/alerts{query}")
    text = await resp.text()
    assert resp.status == 200, text
    assert TOKEN not in text
    assert APP_KEY not in text
    doc = json.loads(text)
    assert list(doc) == ["alerts"]
    items: list[dict[str, Any]] = doc["alerts"]
    return items


async def test_alerts_lists_each_identity_most_recently_seen_first(alerts_client: Client) -> None:
    """Every identity, with check, host, status, since, last seen and sent, flapping and
    suppressed count, and never the app key."""
    items = await alert_list(alerts_client)
    assert [i["check"] for i in items] == ["cpu-high", "net-down", "flappy", "disk-ok"]
    by_check = {i["check"]: i for i in items}
    assert set(by_check["cpu-high"]) == {
        "target",
        "check",
        "host",
        "primary",
        "status",
        "since",
        "first_seen",
        "last_seen",
        "last_sent",
        "flapping",
        "suppressed",
        "recent_transitions",
    }
    cpu = by_check["cpu-high"]
    assert (cpu["target"], cpu["host"], cpu["primary"]) == ("bigpanda", "serverA", "serverA")
    assert (cpu["status"], cpu["flapping"], cpu["suppressed"]) == ("critical", False, 1)
    assert cpu["since"] == cpu["first_seen"] == cpu["last_sent"] == START
    assert cpu["last_seen"] == START + 44
    flappy = by_check["flappy"]
    assert (flappy["status"], flappy["flapping"], flappy["suppressed"]) == ("ok", True, 0)
    assert flappy["recent_transitions"] == 3
    assert flappy["since"] == flappy["last_seen"] == flappy["last_sent"] == START + 23
    assert by_check["net-down"]["target"] == "other"
    assert (by_check["disk-ok"]["status"], by_check["disk-ok"]["host"]) == ("ok", "serverB")


@pytest.mark.parametrize(
    ("query", "checks"),
    [
        pytest.param("?status=firing", ["cpu-high", "net-down"], id="firing"),
        pytest.param("?status=ok", ["flappy", "disk-ok"], id="ok"),
        pytest.param("?status=flapping", ["flappy"], id="flapping"),
        pytest.param("?target=other", ["net-down"], id="target"),
        pytest.param("?target=nowhere", [], id="unknown-target"),
        pytest.param("?status=firing&target=bigpanda", ["cpu-high"], id="firing-and-target"),
        pytest.param("?limit=2", ["cpu-high", "net-down"], id="limit"),
        pytest.param("?status=ok&limit=1", ["flappy"], id="ok-and-limit"),
        pytest.param("?limit=100000&target=", ["cpu-high", "net-down", "flappy", "disk-ok"]),
    ],
)
async def test_alerts_filters_by_status_and_target_and_limit(
    alerts_client: Client, query: str, checks: list[str]
) -> None:
    """``status`` (firing is any status but ok), ``target`` and ``limit`` narrow the list."""
    assert [i["check"] for i in await alert_list(alerts_client, query)] == checks


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("?status=bogus", "status: must be one of firing, ok, flapping"),
        ("?status=FIRING", "status: must be one of firing, ok, flapping"),
        ("?status=", "status: must be one of firing, ok, flapping"),
        ("?limit=0", "limit: must be a whole number from 1 to 100000"),
        ("?limit=100001", "limit: must be a whole number from 1 to 100000"),
        ("?limit=ten", "limit: must be a whole number from 1 to 100000"),
        ("?limit=%C2%B2", "limit: must be a whole number from 1 to 100000"),
    ],
)
async def test_alerts_refuses_bad_parameters_with_a_json_400(
    served: Served, query: str, error: str
) -> None:
    """A bad parameter is a JSON 400 naming it and what it takes, never a 500."""
    client = await served()
    raw = f"GET /api/v1/alerts{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    status, headers, body = await exchange(client, raw)
    assert status == 400, body
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"error": error}


async def test_alerts_needs_the_ingest_credentials_when_auth_is_set(served: Served) -> None:
    """Like the dead-letter API: 401 without credentials, the list with them."""
    token = "admin-bearer-0c4e1d"
    text = ALERTS_CONFIG.replace(
        "  shutdown_timeout: 2s\n", f"  shutdown_timeout: 2s\n  auth:\n    bearer_token: {token}\n"
    )
    client = await served(text)
    resp = await client.get("/api/v1/alerts")
    assert resp.status == 401
    assert "error" in await resp.json()
    resp = await client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {token}"})
    assert (resp.status, await resp.json()) == (200, {"alerts": []})
