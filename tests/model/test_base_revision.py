"""StreetCLIP from the Hub, pinned: the base's revision resolves to a commit that is loaded, recorded in
the model's manifest and card and counted in its version; HF_HUB_OFFLINE loads it from the cache; an
unreachable Hub is one line naming the repo, the revision and how to fetch it beforehand. Served by a
Hub-shaped server on loopback holding a tiny CLIP under StreetCLIP's name."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from transformers import CLIPImageProcessor, CLIPModel

from geosolver_data.store.home import Home
from geosolver_model import stages
from geosolver_model.net.clip import (
    STREETCLIP,
    BaseModelUnavailable,
    load_clip,
    load_vision,
    tiny_config,
    tiny_tokenizer,
)
from geosolver_model.net.hub import base_commit
from tests.fakes.hub import FakeHub, point_at
from tests.fakes.server import LoopbackServer
from tests.model.conftest import with_model


def _clip_files(tmp_path: Path, seed: int) -> dict[str, bytes]:
    """A tiny CLIP as a Hub repo holds StreetCLIP: config, weights, tokenizer, image processor."""
    config = tiny_config()
    config.vision_config.projection_dim = config.projection_dim  # as a published CLIP's config says it
    torch.manual_seed(seed)
    folder = tmp_path / f"clip-{seed}"
    CLIPModel(config).save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer().save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}).save_pretrained(folder)
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_the_base_is_pinned_recorded_and_loads_offline(tmp_path: Path, learn_dataset, hub_env,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    spec, root, version_dir = learn_dataset
    hub = FakeHub()
    first = hub.push(STREETCLIP, _clip_files(tmp_path, 1))
    home = Home(root)
    streetclip = with_model(spec, base=STREETCLIP, steps=2, objectives=("infonce",), val_every=0)
    with LoopbackServer(hub.app()) as server:
        point_at(hub_env, monkeypatch, server.url)
        pinned = with_model(streetclip, revision=first)
        model = stages.finetune(pinned, home, version_dir.name, log=lambda _: None)
        assert model.info.base_commit == first and model.info.base_revision == first
        card = (model.path / "finetuned" / "README.md").read_text()
        assert f"at commit `{first}`" in card and "base_model: geolocal/StreetCLIP" in card
        second = hub.push(STREETCLIP, _clip_files(tmp_path, 2))  # main moves on
        assert base_commit(STREETCLIP, "main") == second
        moved = stages.model_version(streetclip, version_dir.name, second)
        assert moved != stages.model_version(streetclip, version_dir.name, first)  # a moved branch: a new model
        tower = load_vision(STREETCLIP, first)
        clip, _, processing = load_clip(STREETCLIP, first)
        assert processing.crop == 336 and torch.equal(tower.visual_projection.weight, clip.visual_projection.weight)
    monkeypatch.setattr(hub_env, "HF_HUB_OFFLINE", True)  # no server now: the cache has the pinned commit
    assert torch.equal(load_vision(STREETCLIP, first).visual_projection.weight, tower.visual_projection.weight)
    with pytest.raises(BaseModelUnavailable) as refused:
        load_vision(STREETCLIP, "0" * 40)
    message = str(refused.value)
    assert f"{STREETCLIP}@{'0' * 40}" in message and "hf download" in message and "\n" not in message


def test_an_unreachable_hub_names_the_base_its_revision_and_the_remedy(hub_env,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    point_at(hub_env, monkeypatch, f"http://127.0.0.1:{port}")
    monkeypatch.setattr(hub_env, "HF_HUB_OFFLINE", True)  # what an offline box sets; no retries to wait for
    with pytest.raises(BaseModelUnavailable) as refused:
        load_vision(STREETCLIP, "v1.0")
    message = str(refused.value)
    assert "geolocal/StreetCLIP@v1.0" in message and "hf download geolocal/StreetCLIP --revision v1.0" in message
    assert "\n" not in message
