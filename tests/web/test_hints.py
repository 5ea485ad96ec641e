"""The wrong-endpoint hint: a body of the other source's shape names the endpoint to use."""

from __future__ import annotations

import json

import pytest

from forwarder.web.hints import wrong_endpoint
from tests.conftest import example

KAPACITOR = example("kapacitor-alert-critical.json")
MINIMAL = example("kapacitor-alert-minimal.json")
HTTPPOST = example("kapacitor-httppost-row.json")
INFLUX = example("influxdb-notification-crit.json")


@pytest.mark.parametrize("body", [KAPACITOR, MINIMAL, HTTPPOST], ids=["alert", "minimal", "rows"])
def test_kapacitor_output_posted_to_influxdb_names_kapacitor(body: bytes) -> None:
    assert wrong_endpoint("influxdb", body) == (
        "this looks like a Kapacitor alert or httpPost body; post it to /kapacitor"
    )


def test_an_influxdb_row_posted_to_kapacitor_names_influxdb() -> None:
    assert wrong_endpoint("kapacitor", INFLUX) == (
        "this looks like an InfluxDB notification row; post it to /influxdb"
    )


@pytest.mark.parametrize(
    ("source", "body"),
    [
        ("kapacitor", KAPACITOR),
        ("influxdb", INFLUX),
        ("kapacitor", b"not json"),
        ("kapacitor", b""),
        ("kapacitor", b"[1, 2]"),
        ("influxdb", b'{"series": []}'),
        ("influxdb", b'{"level": "OK"}'),
        ("kapacitor", json.dumps({"level": "OK", "_level": "crit"}).encode()),
    ],
)
def test_no_hint_for_the_right_endpoint_or_an_unknown_shape(source: str, body: bytes) -> None:
    assert wrong_endpoint(source, body) is None
