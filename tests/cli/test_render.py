"""``forwarder render``: each sample payload, as the real CLI prints it, pinned exactly.

The expected alerts follow the issue's mapping rules (Kapacitor's BigPanda
handler): check = id, description = message, details unless JSON, status from
the level, timestamp = Unix seconds, task = ``<task>:<name>``, then tags and
fields as attributes (non-strings as compact JSON).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, REPO

TOKEN = "render-token-SECRET-7c1d"
APP_KEY = "render-appkey-SECRET-9e2f"

CONFIG = f"""
targets:
  bigpanda:
    kind: alerts_v2
    url: http://127.0.0.1:9/data/v2/alerts
    token: {TOKEN}
    app_key: {APP_KEY}
"""
HTTPPOST_CONFIG = (
    CONFIG
    + """
ingest:
  httppost:
    default_level: CRITICAL
"""
)


def render(
    tmp_path: Path, sample: str, *args: str, config: str = CONFIG
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m forwarder render`` on a sample from examples/ with ``config``."""
    path = tmp_path / "forwarder.yaml"
    path.write_text(textwrap.dedent(config))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "forwarder",
            "render",
            "--config",
            str(path),
            *args,
            str(EXAMPLES / sample),
        ],
        capture_output=True,
        text=True,
        env={},
        cwd=str(REPO),
        timeout=60,
        check=False,
    )


def printed_alerts(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The JSON array render printed, after checking it succeeded and leaked nothing."""
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert TOKEN not in result.stdout
    assert APP_KEY not in result.stdout
    alerts = json.loads(result.stdout)
    assert isinstance(alerts, list)
    return alerts


CRITICAL_ALERT = {
    "app_key": "<redacted>",
    "check": "kapacitor.cpu.serverA",
    "description": "kapacitor.cpu.serverA is CRITICAL",
    "status": "critical",
    "timestamp": 31536010,  # 1971-01-01T00:00:10Z
    "task": ":cpu",  # no task name anywhere in the body
    "host": "serverA",
    "count": "10",
}

CASES: list[Any] = [
    pytest.param("kapacitor-alert-critical.json", [], [CRITICAL_ALERT], id="critical"),
    pytest.param(
        "kapacitor-alert-critical.json",
        ["--task", "cpu_alert"],
        [{**CRITICAL_ALERT, "task": "cpu_alert:cpu"}],
        id="critical-with-task",
    ),
    pytest.param(
        "kapacitor-alert-critical.json",
        ["--source", "kapacitor"],
        [CRITICAL_ALERT],
        id="critical-explicit-source",
    ),
    pytest.param(
        "influxdb-notification-crit.json",
        ["--source", "influxdb"],
        [
            {
                "app_key": "<redacted>",
                "check": "High CPU User Usage",
                "description": "High CPU User Usage: rsavage.prod is crit",
                "status": "critical",
                "timestamp": 1567797375,  # _source_timestamp, in seconds
                "task": "HTTP Notification:cpu",
                "cpu": "cpu-total",
                "host": "rsavage.prod",
                "usage_user": "91.12278069517379",
            }
        ],
        id="influxdb",
    ),
]


@pytest.mark.parametrize(("sample", "args", "expected"), CASES)
def test_render_prints_exactly_the_alerts(
    tmp_path: Path, sample: str, args: list[str], expected: list[dict[str, Any]]
) -> None:
    """render prints the JSON array of alerts the sample would produce, app_key redacted."""
    assert printed_alerts(render(tmp_path, sample, *args)) == expected


def test_render_tells_influxdb_apart_by_shape(tmp_path: Path) -> None:
    """Without --source, an InfluxDB notification row is recognised by its _level column."""
    with_flag = printed_alerts(
        render(tmp_path, "influxdb-notification-crit.json", "--source", "influxdb")
    )
    without = printed_alerts(render(tmp_path, "influxdb-notification-crit.json"))
    assert without == with_flag


MINIMAL_ALERT = {
    "app_key": "<redacted>",
    "check": "id",
    "description": "message",
    "details": "details",  # not JSON, so kept
    "status": "critical",
    "timestamp": 0,
    "task": ":alert",
    "value": "1",
}


def test_alert_bigpanda_would_refuse_is_printed_with_a_warning_and_exit_2(tmp_path: Path) -> None:
    """An alert without a primary property still prints, warns on stderr and exits 2.

    The minimal sample has no host, service, application or device, so BigPanda
    would refuse it; the daemon would dead-letter it as no_primary_property.
    """
    result = render(tmp_path, "kapacitor-alert-minimal.json")
    assert result.returncode == 2
    assert json.loads(result.stdout) == [MINIMAL_ALERT]
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("forwarder: warning: ")
    assert "would be refused and dead-lettered (no_primary_property)" in result.stderr
    assert "route 'default'" in result.stderr
    assert "mapping.host" in result.stderr
    assert TOKEN not in result.stderr + result.stdout
    assert APP_KEY not in result.stderr + result.stdout


def test_refused_alert_is_fixed_by_the_hinted_mapping(tmp_path: Path) -> None:
    """Following the hint (a host template) makes render exit 0 without a warning."""
    config = CONFIG + 'mapping:\n  host: "{{ name }}"\n'
    [alert] = printed_alerts(render(tmp_path, "kapacitor-alert-minimal.json", config=config))
    assert alert == {**MINIMAL_ALERT, "host": "alert"}


HTTPPOST_ALERT = {
    "app_key": "<redacted>",
    # Kapacitor's default alert id is "{{ .Name }}:{{ .Group }}".
    "check": "cpu:host=serverA,type=idle",
    "status": "critical",
    "timestamp": 31536000,  # 1971-01-01T00:00:00Z
    "task": "cpu_alert:cpu",
    "host": "serverA",
    "type": "idle",
    "value": "97.1",
}


@pytest.mark.parametrize(
    ("config", "app_key"),
    [
        pytest.param(CONFIG, "<redacted>", id="credentials"),
        pytest.param(HTTPPOST_CONFIG, "<redacted>", id="default-level-not-needed"),
        # The shipped config without its environment: dry-run, no token, no app key.
        pytest.param((REPO / "config" / "forwarder.yaml").read_text(), "", id="shipped-config"),
    ],
)
def test_httppost_sample_renders_one_alert(tmp_path: Path, config: str, app_key: str) -> None:
    """The httpPost sample (a row with a level column) renders one alert, with the shipped
    config too, which has neither token nor app key: render never needs them."""
    result = render(tmp_path, "kapacitor-httppost-row.json", "--task", "cpu_alert", config=config)
    assert printed_alerts(result) == [{**HTTPPOST_ALERT, "app_key": app_key}]


def test_render_of_wrong_source_fails_clearly(tmp_path: Path) -> None:
    """Forcing --source influxdb on a Kapacitor body exits 1 naming the missing column."""
    result = render(tmp_path, "kapacitor-alert-critical.json", "--source", "influxdb")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "_level: missing" in result.stderr


def test_render_template_error_fails_clearly(tmp_path: Path) -> None:
    """A template failing for the sample exits 1 with the key path and no secret."""
    config = CONFIG + "mapping:\n  attributes:\n    team: '{{ tags.team }}'\n"
    result = render(tmp_path, "kapacitor-alert-critical.json", config=config)
    assert result.returncode == 1
    assert "mapping.attributes.team: template error" in result.stderr
    assert TOKEN not in result.stderr + result.stdout
    assert APP_KEY not in result.stderr + result.stdout


def test_render_uses_the_route_that_matches(tmp_path: Path) -> None:
    """render routes the event like the daemon: a route's mapping applies to what it matches."""
    config = (
        CONFIG
        + """
routes:
  - name: cpu
    match:
      task: cpu_*
    app_key: route-key-SECRET-1
    mapping:
      attributes:
        runbook: "https://wiki/{{ task }}"
  - name: default
"""
    )
    result = render(tmp_path, "kapacitor-alert-critical.json", "--task", "cpu_alert", config=config)
    [alert] = printed_alerts(result)
    assert alert["runbook"] == "https://wiki/cpu_alert"
    assert alert["app_key"] == "<redacted>"
    assert "route-key-SECRET-1" not in result.stdout
    [plain] = printed_alerts(render(tmp_path, "kapacitor-alert-critical.json", config=config))
    assert "runbook" not in plain


def test_render_compact_prints_one_line(tmp_path: Path) -> None:
    """--compact prints the same array on one line."""
    result = render(tmp_path, "kapacitor-alert-critical.json", "--compact")
    assert result.stdout.count("\n") == 1
    assert printed_alerts(result) == [CRITICAL_ALERT]


@pytest.mark.parametrize(
    "targets",
    [
        pytest.param(
            "targets:\n  bigpanda:\n    kind: alerts_v2\n    app_key: some-app-key\n",
            id="app-key-without-token",
        ),
        pytest.param(
            "targets:\n  bigpanda:\n    kind: alerts_v2\n    token: ${UNSET_TOKEN}\n"
            "    app_key: ${UNSET_APP_KEY}\n",
            id="unset-variables",
        ),
    ],
)
def test_render_needs_no_token(tmp_path: Path, targets: str) -> None:
    """render sends nothing, so a config without a usable token still renders."""
    [alert] = printed_alerts(render(tmp_path, "kapacitor-alert-critical.json", config=targets))
    assert alert["check"] == CRITICAL_ALERT["check"]
