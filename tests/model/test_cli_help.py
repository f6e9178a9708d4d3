"""The CLI explains itself: every command has a description on its own `--help`, every argument a help."""

from __future__ import annotations

import argparse

from geosolver_model.cli import build_parser


def test_every_command_and_argument_is_described() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {name for name, command in sub.choices.items() if not command.description} == set()
    undescribed = [(name, a.dest) for name, command in sub.choices.items() for a in command._actions
                   if not a.help and a.dest != "help"]
    assert undescribed == []
    assert all(a.help for a in parser._actions if a.dest not in ("help", "command"))
