"""The commented default config, shipped inside the package so a wheel install has it.

``forwarder/data/forwarder.yaml`` is a byte-for-byte copy of the checkout's
``config/forwarder.yaml`` (a test keeps them equal); ``forwarder init`` writes it.
"""

from __future__ import annotations

from importlib.resources import files


def default_config_text() -> str:
    """The text of the packaged default config."""
    return files("forwarder").joinpath("data", "forwarder.yaml").read_text(encoding="utf-8")
