"""The command line as a whole: help on everything, and finding the config file."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from forwarder.cli import build_parser
from tests.cli.support import forwarder


def all_parsers(
    parser: argparse.ArgumentParser, name: str = "forwarder"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The parser and every subcommand's parser, nested ones included, by command line."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from all_parsers(sub, f"{name} {sub_name}")


def test_every_subcommand_has_a_description_and_every_option_help() -> None:
    """Walking the parser: each (sub)command has a description, each option and positional
    argument (and each subcommand in its parent's list) has help text."""
    parsers = dict(all_parsers(build_parser()))
    assert {
        "forwarder run",
        "forwarder check-config",
        "forwarder init",
        "forwarder render",
        "forwarder dlq list",
        "forwarder dlq purge",
        "forwarder alerts",
    } <= set(parsers)
    missing: list[str] = []
    for name, parser in parsers.items():
        if not parser.description:
            missing.append(f"{name}: no description")
        for action in parser._actions:
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}: no help")
            if isinstance(action, argparse._SubParsersAction):
                listed = {a.dest for a in action._choices_actions if a.help}
                missing += [
                    f"{name} {c}: not described in the list" for c in set(action.choices) - listed
                ]
    assert missing == []


def test_missing_default_config_outside_a_checkout_says_how_to_point_at_one(
    tmp_path: Path,
) -> None:
    """Run where there is no config/forwarder.yaml: one line naming --config,
    FORWARDER_CONFIG and `forwarder init`."""
    result = forwarder("check-config", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        "forwarder: error: cannot read config file config/forwarder.yaml: No such file"
    )
    for hint in ("--config FILE", "FORWARDER_CONFIG", "forwarder init config/forwarder.yaml"):
        assert hint in result.stderr
