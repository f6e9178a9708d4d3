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
# No test talks to the real Hugging Face Hub: huggingface_hub reads HF_ENDPOINT once, on import, so it is
# set here, before anything imports it, to a loopback port nobody listens on (a test that serves a Hub
# points huggingface_hub at its own server). Telemetry off, and no token from this machine.
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_TOKEN", None)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one xdist worker per core: each worker's torch (and the Dagster runs it starts)
    # gets its share of the cores, so two workers of two threads each do not thrash two cores. Set
    # before anything imports torch.
    share = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ.setdefault("OMP_NUM_THREADS", str(share))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "home"
    monkeypatch.setenv("GEOSOLVER_HOME", str(root))
    return root


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files marked `long` (the daemon and webserver tests, minutes each) go first: under xdist's
    loadfile distribution they then run beside the short files instead of alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: file order kept


@pytest.fixture
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """huggingface_hub pointed at a cache of this test's own (what HF_HOME does for a user)."""
    from huggingface_hub import constants

    assert constants.ENDPOINT.startswith("http://127.0.0.1:"), "tests/conftest.py keeps the Hub on loopback"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)
    return constants
