"""The example configs in config/examples: valid as shipped, each with a queue of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from forwarder.config import load_config
from tests.conftest import REPO

# oim.yaml joins this list once it has a queue of its own (issue 10; see H-E's notes).
EXAMPLES = [REPO / "config" / "examples" / "templated-routes.yaml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_loads_and_keeps_its_own_queue(path: Path) -> None:
    """Each example loads with an empty environment, and does not share the queue file of
    config/forwarder.yaml (trying an example must not mix its alerts into the main queue)."""
    main = load_config(REPO / "config" / "forwarder.yaml", env={})
    example = load_config(path, env={})
    assert example.queue.path != main.queue.path
