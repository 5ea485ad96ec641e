"""The ``state`` section, global and per route: deduplication, flap damping, auto-resolve.

A route's ``state`` inherits every key it does not set from the global one
(``flap`` key by key). Durations take units (``30s``, ``4h``, ``7d``);
``repeat_interval`` and ``resolve_after`` also take ``0``, which turns them off.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from forwarder.config.convert import Section, as_duration, as_int, as_str_list
from forwarder.config.errors import ConfigError
from forwarder.config.schema import FlapConfig, StateConfig


def _duration_or_off(value: Any, path: str) -> float:
    """A duration, or 0 / ``"0"`` / ``off`` to turn the feature off.

    YAML 1.1 (PyYAML) reads a bare ``off`` as false, so false means off too.
    """
    if value is False or (value in (0, "0", "off") and value is not True):
        return 0.0
    return as_duration(0.0)(value, path)


def _positive_duration(value: Any, path: str) -> float:
    seconds = as_duration(0.0)(value, path)
    if seconds <= 0:
        raise ConfigError(path, f"must be a duration above 0, got {value!r}")
    return seconds


def read_state(node: Any, path: str, base: StateConfig | None) -> StateConfig:
    """A ``state`` block; with ``base``, keys not given are inherited (route overrides)."""
    sec = Section(node, path)
    b = base or StateConfig()
    dedup_on = b.dedup_on
    if "dedup_on" in sec.node:
        raw = sec.raw("dedup_on")
        dedup_on = () if raw is None else as_str_list(raw, sec.key("dedup_on"))
        for i, name in enumerate(dedup_on):
            if not name:
                raise ConfigError(f"{sec.key('dedup_on')}[{i}]", "must not be empty")
    flap = b.flap
    if sec.has("flap"):
        f = Section(sec.raw("flap"), sec.key("flap"))
        flap = FlapConfig(
            transitions=f.get("transitions", as_int(0), flap.transitions),
            window=f.get("window", _positive_duration, flap.window),
            hold=f.get("hold", _positive_duration, flap.hold),
        )
        f.finish()
    cfg = replace(
        b,
        repeat_interval=sec.get("repeat_interval", _duration_or_off, b.repeat_interval),
        dedup_on=dedup_on,
        retention=sec.get("retention", _positive_duration, b.retention),
        flap=flap,
        resolve_after=sec.get("resolve_after", _duration_or_off, b.resolve_after),
    )
    sec.finish()
    return cfg
