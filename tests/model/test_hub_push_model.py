"""A fine-tuned model pushed to the loopback Hub as one commit (`geosolver push model`'s function), its
card accepted as the Hub checks front matter, and the pushed repo loading by its id into the same model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from geosolver_data.store.home import Home
from geosolver_data.store.hub_push import MODEL_FOLDER, push_version
from geosolver_model import stages
from geosolver_model.names import PUBLISHED
from geosolver_model.net.model import GeoRetriever
from tests.fakes.hub import FakeHub, card_errors, point_at
from tests.fakes.server import LoopbackServer
from tests.model.conftest import with_model


def test_a_model_version_is_pushed_once_and_loads_by_its_repo_id(learn_dataset, hub_env, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert MODEL_FOLDER == PUBLISHED  # the data package names the model's published folder too
    spec, _, version_dir = learn_dataset
    home = Home(tmp_path / "home")
    home.dataset(spec.name).versions.mkdir(parents=True)
    (home.dataset(spec.name).versions / version_dir.name).symlink_to(version_dir)
    quick = with_model(spec, steps=6, checkpoint_every=3)
    publishing = type(quick).model_validate({**quick.model_dump(), "publish": {"dataset": {"repo": "me/streets"},
                                                                             "model": {"repo": "me/geo"}}})
    model = stages.finetune(publishing, home, version_dir.name, log=lambda _: None)
    hub = FakeHub()
    monkeypatch.setattr(hub_env, "HF_HUB_DISABLE_XET", True)  # the loopback Hub speaks the LFS basic transfer
    monkeypatch.setattr(hub_env, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False)
    monkeypatch.setenv("HF_TOKEN", hub.token)
    with LoopbackServer(hub.app()) as server:
        point_at(hub_env, monkeypatch, server.url)
        first = push_version(model, "me/geo", "model", log=lambda _: None)
        again = push_version(model, "me/geo", "model", log=lambda _: None)
        assert first.new_commit and not again.new_commit and first.commit == again.commit
        assert [(c[1], c[2]) for c in hub.commits] == [("me/geo", f"model version {model.version}")]
        files = hub.repos[("model", "me/geo")][first.commit]
        card = files["README.md"].decode()
        assert card_errors(card, "model") == [] and "model.safetensors" in files
        front = yaml.safe_load(card.split("---")[1])
        assert front["datasets"] == ["me/streets"] and 'GeoRetriever.from_pretrained("me/geo")' in card
        results = front["model-index"][0]["results"][0]
        assert results["dataset"]["split"] == "validation" and results["dataset"]["type"] == "me/streets"
        assert {m["type"] for m in results["metrics"]} >= {"median_km", "acc_25km", "geoguessr_score"}
        assert any(p.startswith("runs/") for p in files)  # the TensorBoard curves: the Hub's training metrics
        assert "manifest.json" in files and not any(p.startswith(("objectives/", PUBLISHED)) for p in files)
        monkeypatch.delenv("HF_TOKEN")
        loaded = GeoRetriever.from_pretrained("me/geo", device="cpu")
    local = GeoRetriever.from_pretrained(model.path / PUBLISHED, device="cpu")
    left, right = loaded.state_dict(), local.state_dict()
    assert left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)
