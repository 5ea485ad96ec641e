"""``forwarder alerts`` as a real subprocess, on a queue file the real pipeline filled.

The identities are decided by the real SQLite store from Kapacitor example
bodies, at times a fake clock sets in the past; the command then reads the
file beside nothing else, as an operator would run it next to a daemon.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from forwarder.config import QueueConfig
from forwarder.pipeline import Pipeline
from forwarder.queue.sqlite import SQLiteQueue
from tests.conftest import (
    ALERT_STATE_CONFIG,
    APP_KEY,
    TOKEN,
    example,
    forwarder_cli,
    make_config,
    write_config,
)
from tests.fakes.clock import FakeClock

CONFIG = ALERT_STATE_CONFIG

HEADER = ["TARGET", "STATUS", "SINCE", "SEEN", "SENT", "FLAP", "SUPPR", "HOST", "CHECK"]


@pytest.fixture
async def config(tmp_path: Path) -> Path:
    """A config file whose queue holds four identities, most recently seen first:

    cpu-high (critical for 3 h, one repeat suppressed 10 min ago), mem-flap (flapping,
    ok), net-down (critical, target ``other``), disk-ok (ok for an hour).
    """
    path = write_config(tmp_path, CONFIG)
    pipeline = Pipeline(make_config(tmp_path, CONFIG))
    clock = FakeClock(time.time() - 3 * 3600)
    queue = SQLiteQueue(QueueConfig(path=tmp_path / "queue.db", synchronous="normal"), clock=clock)

    async def post(check: str, level: str, host: str, task: str | None = None) -> int:
        body: dict[str, Any] = json.loads(example("kapacitor-alert-critical.json"))
        body.update(id=check, level=level)
        body["data"]["series"][0]["tags"]["host"] = host
        result = await queue.put(pipeline.process("kapacitor", body, task=task).items)
        return result.queued

    def at(seconds_ago: float) -> None:
        clock.advance(time.time() - seconds_ago - clock.time())

    await queue.open()
    try:
        assert await post("cpu-high", "CRITICAL", "web-1") == 1
        at(3600)
        assert await post("disk-ok", "OK", "db-1") == 1
        at(1800)
        assert await post("net-down", "CRITICAL", "sw-1", task="other") == 1
        at(900)
        for level in ("CRITICAL", "OK", "CRITICAL", "OK"):
            assert await post("mem-flap", level, "web-2") == 1
            clock.advance(1)
        at(600)
        assert await post("cpu-high", "CRITICAL", "web-1") == 0  # a repeat: suppressed
    finally:
        await queue.close()
    return path


async def alerts(config: Path, *args: str) -> tuple[int, str]:
    """Run ``forwarder alerts ARGS --config CONFIG``; the exit code and all output."""
    code, text = await forwarder_cli(config, "alerts", *args)
    assert TOKEN not in text
    assert APP_KEY not in text
    return code, text


def table(out: str) -> list[list[str]]:
    """The rows of the table split into columns (the header checked and dropped)."""
    lines = out.strip().splitlines()
    assert lines[0].split() == HEADER
    return [ln.split() for ln in lines[1:]]


async def test_alerts_prints_one_line_per_identity(config: Path) -> None:
    """Target, status, since, last seen and sent (as ages), flapping, suppressed, host and
    check, most recently seen first."""
    code, out = await alerts(config)
    assert code == 0, out
    rows = table(out)
    assert [r[-1] for r in rows] == ["cpu-high", "mem-flap", "net-down", "disk-ok"]
    by_check = {r[-1]: dict(zip(HEADER, r, strict=True)) for r in rows}
    cpu = by_check["cpu-high"]
    assert (cpu["TARGET"], cpu["STATUS"], cpu["FLAP"], cpu["SUPPR"], cpu["HOST"]) == (
        "bigpanda",
        "critical",
        "no",
        "1",
        "web-1",
    )
    assert cpu["SINCE"].startswith("3h")
    assert cpu["SENT"].startswith("3h")
    assert re.fullmatch(r"10m\d+s", cpu["SEEN"]), cpu["SEEN"]
    flap = by_check["mem-flap"]
    assert (flap["STATUS"], flap["FLAP"], flap["SUPPR"]) == ("ok", "yes", "0")
    assert by_check["net-down"]["TARGET"] == "other"
    assert by_check["disk-ok"]["SINCE"].startswith("1h")  # seen an hour ago, ok since then


@pytest.mark.parametrize(
    ("args", "checks"),
    [
        pytest.param(["--firing"], ["cpu-high", "net-down"], id="firing"),
        pytest.param(["--flapping"], ["mem-flap"], id="flapping"),
        pytest.param(["--target", "other"], ["net-down"], id="target"),
        pytest.param(["--firing", "--target", "bigpanda"], ["cpu-high"], id="firing-target"),
        pytest.param(["--limit", "2"], ["cpu-high", "mem-flap"], id="limit"),
    ],
)
async def test_alerts_narrows_by_status_target_and_limit(
    config: Path, args: list[str], checks: list[str]
) -> None:
    code, out = await alerts(config, *args)
    assert code == 0, out
    assert [r[-1] for r in table(out)] == checks


async def test_alerts_json_is_an_array_of_the_api_objects(config: Path) -> None:
    """``--json`` prints the objects ``GET /api/v1/alerts`` lists, as one JSON array."""
    code, out = await alerts(config, "--json", "--firing")
    assert code == 0, out
    items = json.loads(out)
    assert [i["check"] for i in items] == ["cpu-high", "net-down"]
    assert set(items[0]) == {
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
    assert (items[0]["status"], items[0]["suppressed"], items[0]["host"]) == (
        "critical",
        1,
        "web-1",
    )
    assert items[0]["last_seen"] - items[0]["since"] == pytest.approx(3 * 3600 - 600, abs=5)


async def test_nothing_to_show_says_so(config: Path) -> None:
    code, out = await alerts(config, "--target", "nowhere")
    assert (code, out.strip()) == (0, "no alerts")
    code, out = await alerts(config, "--flapping", "--target", "other")
    assert (code, out.strip()) == (0, "no flapping alerts")
    code, out = await alerts(config, "--json", "--target", "nowhere")
    assert (code, json.loads(out)) == (0, [])


async def test_alerts_without_a_queue_file_explains(tmp_path: Path) -> None:
    """No queue database yet: exit 1, one line saying the daemon never ran; no file made."""
    path = write_config(tmp_path, CONFIG)
    code, out = await alerts(path)
    assert code == 1
    assert out.count("\n") == 1
    assert "has the daemon ever run with this config?" in out
    assert not (tmp_path / "queue.db").exists()


@pytest.mark.parametrize("args", [["--limit", "0"], ["--firing", "--flapping"]])
async def test_bad_options_are_usage_errors(config: Path, args: list[str]) -> None:
    code, out = await alerts(config, *args)
    assert code == 2
    assert "usage: forwarder alerts" in out
