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
    body = alert(details=data.draw(st.sampled_from(["", DEFAULT_DETAILS, "plain text"])))
    series = body["data"]["series"][0]
    series["values"].append(data.draw(st.lists(_ANY, min_size=1, max_size=3)))
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
