"""Fixtures shared by the data tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.imagery import Imagery
from tests.fakes.mapillary import FakeMapillary
from tests.fakes.server import LoopbackServer

TOKEN = "MLY|4242|s3cr3t-token-for-tests"


@pytest.fixture
def mapillary(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Imagery, FakeMapillary]]:
    imagery = Imagery()
    fake = FakeMapillary(imagery, TOKEN)
    with LoopbackServer(fake.app) as server:
        monkeypatch.setenv("MAPILLARY_API_URL", server.url)
        monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", TOKEN)
        yield imagery, fake
