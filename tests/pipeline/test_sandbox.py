"""The bounded template sandbox: what one render may cost, and that ordinary templates still work.

Each costly template is rendered through the real mapper; it must fail fast with a
``RenderError`` saying which bound it hit, and never allocate or loop for long.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from forwarder.config import MappingConfig
from forwarder.model import Event, Level, Source
from forwarder.pipeline.mapping import Mapper, RenderError
from forwarder.pipeline.sandbox import MAX_LOOP_STEPS, MAX_TEXT

EVENT = Event(
    source=Source.KAPACITOR,
    id="cpu:host=a",
    message="cpu high",
    details="",
    level=Level.CRITICAL,
    time=datetime(1971, 1, 1, tzinfo=UTC),
    name="cpu",
    tags={"host": "a", "big": "b" * 60_000},
    fields={"n": 3},
)


def render(template: str, event: Event = EVENT) -> str:
    """The attribute ``x`` rendered from ``template``."""
    mapping = MappingConfig(attributes={"x": template})
    value = Mapper([("mapping", mapping)]).map(event, mapping).alert.get("x", "")
    assert isinstance(value, str)
    return value


COSTLY: list[Any] = [
    pytest.param("{{ tags.host * 100000 }}", "repetition", id="repeat-data"),
    pytest.param("{{ tags.big + tags.big }}", "concatenation", id="concat-plus"),
    pytest.param("{{ tags.big ~ tags.big }}", "output", id="concat-tilde"),
    pytest.param("{{ fields.n ** 10000 }}", "power", id="power-of-data"),
    pytest.param("{{ '%999999999d' | format(1) }}", "format width", id="printf-filter"),
    pytest.param("{{ '%*d' % (999999999, 1) }}", "'*' width", id="printf-star"),
    pytest.param("{{ '{:>999999999}'.format(1) }}", "format width", id="str-format"),
    pytest.param("{{ 'x'.center(10**9) }}", "str.center", id="str-center"),
    pytest.param("{{ range(10000) | join('x' * 60000) }}", "joined", id="join-filter"),
    pytest.param("{{ ('x' * 60000).join(range(10000)) }}", "joined", id="str-join"),
    pytest.param("{{ tags.big | replace('b', 'bb') }}", "replaced", id="replace"),
    pytest.param("{{ ('a\\n' * 30000) | indent(100) }}", "indented", id="indent"),
    pytest.param("{{ lipsum(1000) }}", "lipsum", id="lipsum"),
    pytest.param(
        "{% for i in range(5000) %}{% for j in range(5000) %}{% endfor %}{% endfor %}",
        "loop iterations",
        id="nested-loops",
    ),
    pytest.param(
        "{% for a in tags.big %}{% for b in tags.big %}{% endfor %}{% endfor %}",
        "loop iterations",
        id="nested-loops-over-data",
    ),
    pytest.param(
        "{% macro f(n) %}{% if n < 30 %}{{ f(n+1) }}{{ f(n+1) }}{% endif %}{% endmacro %}"
        "{{ f(0) }}",
        "loop iterations and calls",
        id="macro-fan-out",
    ),
    pytest.param("{% for i in range(5000) %}{{ 'x' * 60 }}{% endfor %}", "output", id="output"),
    pytest.param(
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
        "output",
        id="doubling",
    ),
    pytest.param(
        "{% set x %}{% for i in range(100) %}{{ tags.big }}{% endfor %}{% endset %}{{ x|length }}",
        "output",
        id="block-set",
    ),
]


@pytest.mark.parametrize(("template", "bound"), COSTLY)
def test_costly_template_is_refused_at_render(template: str, bound: str) -> None:
    """A template over a bound fails for the alert, naming the bound, without doing the work."""
    with pytest.raises(RenderError) as info:
        render(template)
    message = str(info.value)
    assert message.startswith("mapping.attributes.x: template not allowed: template too costly")
    assert bound in message


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 3 * 4 }}/{{ 'ab' * 3 }}/{{ 2 ** 10 }}/{{ 'a' + 'b' }}", "12/ababab/1024/ab"),
        ("{{ '%05d' % 42 }}/{{ '{:>4}'.format(7) }}/{{ '%s' | format('f') }}", "00042/   7/f"),
        ("{{ [1, 2] | join('-') }}/{{ '-'.join(['a', 'b']) }}", "1-2/a-b"),
        (
            "{{ 'a b' | replace('a', 'c') }}/{{ 'x' | center(5) }}/{{ 'ab' ~ 'cd' }}",
            "c b/  x  /abcd",
        ),
        (
            "{% for k, v in tags | dictsort %}{% if k != 'big' %}{{ k }}={{ v }}{% endif %}"
            "{% endfor %}",
            "host=a",
        ),
        ("{{ range(3) | list | length }}/{{ tags.big | length }}", "3/60000"),
    ],
)
def test_ordinary_templates_still_work(template: str, expected: str) -> None:
    """The operators, filters and loops an alert template uses are unaffected."""
    assert render(template) == expected


def test_budget_is_per_render() -> None:
    """Each render gets the whole budget: a loop close to it works render after render."""
    template = f"{{% for i in range({MAX_LOOP_STEPS - 10}) %}}{{% endfor %}}ok"
    mapping = MappingConfig(attributes={"x": template})
    mapper = Mapper([("mapping", mapping)])
    for _ in range(3):
        assert mapper.map(EVENT, mapping).alert["x"] == "ok"


def test_output_up_to_the_bound_is_allowed() -> None:
    """Exactly MAX_TEXT characters of output pass (BigPanda then cuts the attribute to 512)."""
    event = dataclasses.replace(EVENT, tags={"host": "a", "big": "b" * MAX_TEXT})
    mapping = MappingConfig(auto_attributes=(), attributes={"x": "{{ tags.big }}"})
    result = Mapper([("mapping", mapping)]).map(event, mapping)
    assert result.alert["x"] == "b" * 512
    assert result.truncations == 1
    with pytest.raises(RenderError, match="output would be longer"):
        render("{{ tags.big }}!", dataclasses.replace(event, tags={"big": "b" * MAX_TEXT}))
