"""The fenced Kapacitor fast path (forwarder.ingest.kapacitor_fast) against the checked parser.

The fast path may decline anything unusual; whatever it accepts must be the
very event the checked parser makes, so a user sees one behaviour whichever
path an alert took.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forwarder.ingest import ParseError, kapacitor
from forwarder.ingest.kapacitor_fast import alert_fast
from tests.ingest.test_kapacitor import DEFAULT_DETAILS, alert, sample

_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["OK", "critical", "1971-01-01T00:00:10Z", "2026-02-30T00:00:00Z"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
# Default details whose Fields is not an object: the rows decide then.
_ODD = "{&#34;TaskName&#34;:&#34;t&#34;,&#34;Fields&#34;:[1]}"
_ROW = st.lists(
    st.one_of(
        st.sampled_from(
            ["1971-01-01T00:00:10Z", "1971-01-01T02:00:10+02:00", "1971-01-01T00:00:00Z"]
        ),
        _ANY,
    ),
    min_size=2,
    max_size=2,
)
# Mostly keep a field: most examples then stay near a real alert, where the
# fast path has to decide.
_ACTION = st.sampled_from(["keep", "keep", "keep", "keep", "keep", "drop", "replace"])


def _mutate(data: st.DataObject, obj: dict[str, Any], keys: list[str]) -> None:
    for key in keys:
        action = data.draw(_ACTION)
        if action == "drop":
            obj.pop(key, None)
        elif action == "replace":
            obj[key] = data.draw(_ANY)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_fast_path_agrees_with_the_checked_path(data: st.DataObject) -> None:
    """Whatever the fast path accepts, the checked path accepts as the same event.

    The fast path may decline (None) anything unusual; then the checked path
    decides, so a user sees one behaviour whichever path an alert took.
    """
    body = alert(details=data.draw(st.sampled_from(["", DEFAULT_DETAILS, "plain text", _ODD])))
    series = body["data"]["series"][0]
    # A second row makes a batch: a malformed one, or a well-formed one whose
    # time may be the alert's (spelled the same or not) and whose value may be
    # a string, like a tag outside the group.
    series["values"].append(data.draw(st.lists(_ANY, min_size=1, max_size=3) | _ROW))
    _mutate(data, series, ["name", "tags", "columns", "values"])
    _mutate(data, body["data"], ["series"])
    keys = ["id", "message", "details", "time", "duration", "level", "previousLevel"]
    _mutate(data, body, [*keys, "recoverable", "data"])
    task = data.draw(st.sampled_from([None, "", "from-path"]))
    fast = alert_fast(body, task)
    try:
        checked = kapacitor._alert_checked(body, task)
    except ParseError:
        assert fast is None
        return
    if fast is not None:
        assert fast == checked


def test_the_fast_path_takes_the_shipped_samples() -> None:
    """The alert bodies Kapacitor really sends never need the slow path."""
    for name in ("kapacitor-alert-critical.json", "kapacitor-alert-minimal.json"):
        body = sample(name)
        fast = alert_fast(body, None)
        assert fast is not None, name
        assert fast == kapacitor._alert_checked(body, None)
    with_details = alert(details=DEFAULT_DETAILS)
    fast = alert_fast(with_details, None)
    assert fast is not None
    assert fast.task == "cpu_alert"
    assert fast == kapacitor._alert_checked(with_details, None)


def test_the_fast_path_takes_a_batch_alert() -> None:
    """A batch alert (several rows) is taken by the fast path, with the triggering row's fields."""
    body = alert(time="1971-01-01T00:00:01Z")
    series = body["data"]["series"][0]
    series["columns"] = ["time", "cpu", "count"]
    series["values"] = [["1971-01-01T00:00:00Z", "cpu0", 1], ["1971-01-01T00:00:01Z", "cpu1", 7]]
    fast = alert_fast(body, None)
    assert fast is not None
    assert fast.fields == {"count": 7}
    assert fast == kapacitor._alert_checked(body, None)
