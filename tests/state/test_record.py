"""What the store keeps per identity (forwarder.state.record): row copies, the API's view."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from forwarder import jsonio
from forwarder.state import AlertState, AlertView
from forwarder.state.record import view


def row(payload: Any = None, **changes: Any) -> AlertState:
    """A firing row whose identity clock runs 500 s ahead of the wall (a replayed backlog)."""
    alert = {"check": "cpu", "host": "web-1", "status": "critical"} if payload is None else payload
    base = AlertState(
        "bigpanda",
        "secret-app-key",
        "cpu\x1fweb-1",
        "critical",
        "",
        payload if isinstance(payload, bytes) else jsonio.dumps(alert),
        1_700_000_000,
        first_seen=1000.0,
        seen=2000.0,
        clock=2500.0,
        since=2400.0,
        sent=1900.0,
        transitions=[2300.0, 2400.0],
        suppressed=7,
    )
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def test_copy_is_independent_of_the_original() -> None:
    """A copy equals its original field by field, and changing it (transitions too) leaves it be."""
    original = row(flapping=True, resolve_after=60.0, hold=30.0, retention=90.0, due=5.0)
    dup = original.copy()
    assert dup == original
    assert [getattr(dup, f.name) for f in fields(AlertState)] == [
        getattr(original, f.name) for f in fields(AlertState)
    ]
    dup.transitions.append(9.0)
    dup.suppressed += 1
    assert original.transitions == [2300.0, 2400.0]
    assert original.suppressed == 7


def test_view_shows_what_the_api_lists() -> None:
    """check, host, status and times; ``since`` converted from the identity clock to the wall."""
    v = view(row())
    assert v == AlertView(
        target="bigpanda",
        check="cpu",
        host="web-1",
        primary="web-1",
        status="critical",
        since=1900.0,  # 100 s before the last sighting, on the identity clock
        first_seen=1000.0,
        last_seen=2000.0,
        last_sent=1900.0,
        flapping=False,
        suppressed=7,
        transitions=2,
    )
    out = v.to_json()
    assert out["recent_transitions"] == 2
    assert set(out) == {
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
    assert "secret-app-key" not in jsonio.dumps(out).decode()


@pytest.mark.parametrize(
    ("alert", "primary"),
    [
        pytest.param({"check": "c", "host": "h"}, "h", id="host"),
        pytest.param({"check": "c", "service": "s"}, "s", id="service-without-host"),
        pytest.param({"check": "c", "device": "d"}, "d", id="device"),
        pytest.param(
            {"check": "c", "host": "h", "primary_property": "cluster", "cluster": "eu-1"},
            "eu-1",
            id="primary-property",
        ),
        pytest.param({"check": "c"}, "", id="none"),
    ],
)
def test_view_reads_the_primary_property_as_bigpanda_would(
    alert: dict[str, Any], primary: str
) -> None:
    """The configured primary property, else BigPanda's defaults in order."""
    assert view(row(alert)).primary == primary


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'"text"'])
def test_a_payload_that_is_not_an_alert_object_shows_empty_fields(payload: bytes) -> None:
    """A damaged stored payload never fails a listing: its fields are just empty."""
    v = view(row(payload))
    assert (v.check, v.host, v.primary, v.status) == ("", "", "", "critical")
