"""Test-wide settings: every test builds the tiny spec under a temporary GEOSOLVER_HOME.

GEOSOLVER_SPEC is set before anything imports `pipelines`, because the region partitions are
read from the spec when the code location loads.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TINY_SPEC = Path(__file__).parent / "specs" / "tiny.yaml"
os.environ["GEOSOLVER_SPEC"] = str(TINY_SPEC)
os.environ.pop("GEOSOLVER_HOME", None)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "home"
    monkeypatch.setenv("GEOSOLVER_HOME", str(root))
    return root


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files marked `long` (the daemon and webserver tests, minutes each) go first: under xdist's
    loadfile distribution they then run beside the short files instead of alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: file order kept
