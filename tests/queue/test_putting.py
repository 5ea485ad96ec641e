"""A group commit's state decisions (forwarder.queue.putting.decide), as both backends run them.

A group commit gathers several puts; their alerts are decided in put order
and, within a put, in order, each against its identity's row as the alerts
before it left it. No store here: the rows a backend would have loaded are a
plain mapping.
"""

from __future__ import annotations

from dataclasses import replace

from forwarder import jsonio
from forwarder.config import FlapConfig, StateConfig
from forwarder.model import Outgoing
from forwarder.queue.putting import decide, state_keys
from forwarder.state import AlertState, Observation

NOW = 1_700_000_000.0
POLICY = StateConfig(repeat_interval=3600.0)
FLAPPY = replace(POLICY, flap=FlapConfig(transitions=1, window=600.0, hold=300.0))


def alert(
    check: str,
    status: str = "critical",
    *,
    target: str = "bigpanda",
    policy: StateConfig | None = POLICY,
    n: int = 0,
) -> Outgoing:
    """An alert of identity ``check``; ``n`` is a metric value (not deduplicated on)."""
    body = {"check": check, "host": "web-1", "status": status, "timestamp": 1000, "n": n}
    state = Observation(status, "", policy) if policy is not None else None
    return Outgoing(target, "key", check, jsonio.dumps(body), 1000, state)


def ns(items: list[Outgoing]) -> list[tuple[str, int]]:
    """(check, n) of each queued alert."""
    out = []
    for i in items:
        body = jsonio.loads(i.payload)
        assert isinstance(body, dict)
        out.append((body["check"], body["n"]))
    return out


def test_state_keys_are_the_identities_with_an_observation() -> None:
    """The rows a commit must load: one per observed identity, none for plain items."""
    puts = [[alert("a"), alert("b"), alert("a")], [alert("c", policy=None), alert("b")]]
    assert state_keys(puts) == {("bigpanda", "key", "a"), ("bigpanda", "key", "b")}


def test_a_later_put_is_decided_against_what_an_earlier_put_left() -> None:
    """Two puts in one commit: the second's repeat is a duplicate of the first's alert."""
    first = [alert("a", n=1), alert("b", n=1)]
    second = [alert("a", n=2), alert("b", "ok", n=2), alert("c", n=2)]
    got = decide([first, second], {}, NOW)
    assert [ns(q) for q in got.queue] == [[("a", 1), ("b", 1)], [("b", 2), ("c", 2)]]
    assert got.results[0].queued == 2
    assert dict(got.results[0].suppressed) == {}
    assert got.results[1].queued == 2
    assert dict(got.results[1].suppressed) == {("bigpanda", "duplicate"): 1}
    assert set(got.rows) == {("bigpanda", "key", k) for k in "abc"}
    row_a = got.rows[("bigpanda", "key", "a")]
    assert (row_a.suppressed, row_a.queued_status) == (1, "critical")
    assert got.rows[("bigpanda", "key", "b")].status == "ok"


def test_alerts_of_one_identity_within_a_put_are_decided_in_order() -> None:
    """crit, crit, ok, ok in one put: the first of each status goes out, in order."""
    items = [alert("a", s, n=i) for i, s in enumerate(["critical", "critical", "ok", "ok"])]
    got = decide([items], {}, NOW)
    assert ns(got.queue[0]) == [("a", 0), ("a", 2)]
    assert got.results[0].suppressed_total == 2


def test_suppressed_counts_are_per_target_and_reason() -> None:
    """Each put's result counts its own suppressed alerts by (target, reason)."""
    rows = {
        ("bigpanda", "key", "dup"): decide([[alert("dup")]], {}, NOW).rows[
            ("bigpanda", "key", "dup")
        ],
        ("other", "key", "dup"): decide([[alert("dup", target="other")]], {}, NOW).rows[
            ("other", "key", "dup")
        ],
    }
    flappy = [alert("f", s, policy=FLAPPY) for s in ["critical", "ok", "critical", "ok", "ok"]]
    put = [
        alert("dup"),
        alert("dup"),
        alert("dup", target="other"),
        *flappy,
    ]
    got = decide([put], rows, NOW)
    # f: crit (new), ok (1 change), crit (2 changes > 1: flapping "true"), then held twice.
    assert dict(got.results[0].suppressed) == {
        ("bigpanda", "duplicate"): 2,
        ("other", "duplicate"): 1,
        ("bigpanda", "flapping"): 2,
    }
    assert got.results[0].suppressed_total == 5
    assert got.results[0].queued == 3


def test_items_without_an_observation_are_queued_as_they_are() -> None:
    """A replayed dead letter (no state) is queued unconditionally and touches no row."""
    plain = alert("a", policy=None)
    got = decide([[plain, plain]], {}, NOW)
    assert got.queue == [[plain, plain]]
    assert got.queue[0][0] is plain
    assert got.rows == {}
    assert got.results[0].queued == 2


def test_the_loaded_rows_and_the_items_are_not_changed() -> None:
    """decide works on copies: the backend's cache and the put's items stay as they were."""
    loaded = decide([[alert("a")]], {}, NOW).rows
    key = ("bigpanda", "key", "a")
    before: AlertState = loaded[key].copy()
    item = alert("a", "ok")
    payload = item.payload
    got = decide([[alert("a"), item]], dict(loaded), NOW + 1)
    assert loaded[key] == before
    assert got.rows[key] is not loaded[key]
    assert got.rows[key].status == "ok"
    assert item.payload == payload
    assert item.state is not None
    assert item.state.status == "ok"


def test_a_row_given_as_none_is_a_new_identity() -> None:
    """The backend found no row: the alert is the identity's first and is queued."""
    got = decide([[alert("a")]], {("bigpanda", "key", "a"): None}, NOW)
    assert got.results[0].queued == 1
    assert got.rows[("bigpanda", "key", "a")].first_seen == NOW
