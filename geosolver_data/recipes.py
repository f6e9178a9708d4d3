"""The packaged example specs (`geosolver spec --example NAME`): one per kind of real run, each with a
comment header saying what it builds, what it needs and what it costs. They live beside the demo spec
in geosolver_data/specs/ and are printed verbatim, comments included, to be copied and edited."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from geosolver_data.errors import UsageError


def _folder() -> Path:
    return Path(str(resources.files("geosolver_data") / "specs"))


def recipe_names() -> list[str]:
    return sorted(p.stem for p in _folder().glob("*.yaml"))


def recipe_path(name: str) -> Path:
    """The recipe's file; a UsageError naming the recipes there are for any other name."""
    if name not in recipe_names():
        raise UsageError(f"no example spec {name!r}; there are: {', '.join(recipe_names())}")
    return _folder() / f"{name}.yaml"


def recipe_summary(name: str) -> str:
    """The first sentence of the recipe's comment header."""
    header = []
    for line in recipe_path(name).read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text:
            break
        header.append(text)
    first = re.split(r"(?<=[a-z0-9)])\. (?=[A-Z])", " ".join(header))[0]
    return first.rstrip(".:") + "."
