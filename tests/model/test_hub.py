"""Saved geolocators from a Hub-shaped server on loopback, through huggingface_hub's own download and
cache: by id, pinned to a revision, offline from the cache, private with a token that is never written,
and one clear line when the Hub cannot give them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from geosolver_model.net.hub import HubUnavailable
from geosolver_model.net.model import SAVED_FILES, GeoRetriever
from geosolver_model.train.loop import build_model
from tests.fakes.hub import FakeHub, point_at
from tests.fakes.server import LoopbackServer
from tests.model.conftest import TINY


def _saved(tmp_path: Path, seed: int) -> tuple[Path, dict[str, bytes]]:
    torch.manual_seed(seed)
    model = build_model(TINY.model_copy(update={"seed": seed}))
    folder = tmp_path / f"saved-{seed}"
    model.save(folder)
    return folder, {name: (folder / name).read_bytes() for name in SAVED_FILES}


def _same(a: GeoRetriever, b: GeoRetriever) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_a_hub_id_loads_pinned_and_then_offline_from_the_cache(tmp_path: Path, hub_env,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    first_folder, first = _saved(tmp_path, 1)
    second_folder, second = _saved(tmp_path, 2)
    hub = FakeHub()
    pinned = hub.push("acme/geo", first)
    hub.push("acme/geo", second)  # main moves on
    with LoopbackServer(hub.app()) as server:
        point_at(hub_env, monkeypatch, server.url)
        latest = GeoRetriever.from_pretrained("acme/geo", device="cpu")
        old = GeoRetriever.from_pretrained("acme/geo", device="cpu", revision=pinned)
        assert _same(latest, GeoRetriever.from_pretrained(second_folder, device="cpu"))
        assert _same(old, GeoRetriever.from_pretrained(str(first_folder), device="cpu"))  # a str folder too
        with pytest.raises(HubUnavailable, match=r"acme/nothing@main .*hf download acme/nothing"):
            GeoRetriever.from_pretrained("acme/nothing", device="cpu")
        hub.push("acme/half", {"config.json": first["config.json"]})
        with pytest.raises(HubUnavailable, match=r"acme/half@main has no model\.safetensors"):
            GeoRetriever.from_pretrained("acme/half", device="cpu")
    monkeypatch.setattr(hub_env, "HF_HUB_OFFLINE", True)  # the server is gone: the cache answers
    assert _same(GeoRetriever.from_pretrained("acme/geo", device="cpu", revision=pinned), old)
    with pytest.raises(HubUnavailable, match="HF_HUB_OFFLINE is set and the cache lacks it") as refused:
        GeoRetriever.from_pretrained("acme/geo", device="cpu", revision="0" * 40)
    assert "\n" not in str(refused.value)


def test_a_private_repo_needs_the_token_which_is_never_written(tmp_path: Path, hub_env,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _, files = _saved(tmp_path, 3)
    hub = FakeHub(private={"acme/secret"})
    hub.push("acme/secret", files)
    with LoopbackServer(hub.app()) as server:
        point_at(hub_env, monkeypatch, server.url)
        with pytest.raises(HubUnavailable, match="acme/secret@main") as refused:
            GeoRetriever.from_pretrained("acme/secret", device="cpu")
        monkeypatch.setenv("HF_TOKEN", hub.token)
        monkeypatch.setattr(hub_env, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False)
        GeoRetriever.from_pretrained("acme/secret", device="cpu")
    assert f"Bearer {hub.token}" in hub.seen_authorization
    assert hub.token not in str(refused.value)
    for path in Path(hub_env.HF_HUB_CACHE).rglob("*"):
        if path.is_file():
            assert hub.token.encode() not in path.read_bytes(), path


def test_an_unreachable_hub_is_one_line_naming_the_repo_and_the_remedy(tmp_path: Path, hub_env,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    point_at(hub_env, monkeypatch, f"http://127.0.0.1:{port}")
    with pytest.raises(HubUnavailable) as refused:
        GeoRetriever.from_pretrained("acme/geo", device="cpu", revision="v2")
    message = str(refused.value)
    assert "acme/geo@v2" in message and "hf download acme/geo --revision v2" in message and "\n" not in message
