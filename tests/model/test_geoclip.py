"""GeoCLIP's published weights in our location encoder give GeoCLIP's own GPS embeddings; the warm
start and the MP-16 gallery come from the installed `geoclip` package, offline."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

from geosolver_data.model_spec import ModelConfig
from geosolver_model.net import geoclip
from geosolver_model.net.location_encoder import LocationEncoder
from geosolver_model.retrieval.gallery import spec_gallery
from geosolver_model.train.loop import build_model

# GeoCLIP's rff module decorates its functions with torch.jit.script, which torch 2.13 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def geoclips_own_location_encoder() -> torch.nn.Module:
    """GeoCLIP's LocationEncoder class, run from its package's own source files. The package's
    __init__ is skipped (it imports torchvision and a CLIP from the Hub); only `misc`, which needs
    pandas for an unrelated CSV reader, is replaced by the one name location_encoder takes from it."""
    root = geoclip.package_dir()
    names = {"geoclip_ref": root, "geoclip_ref.model": root / "model"}
    for name, path in names.items():
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package
    misc = types.ModuleType("geoclip_ref.model.misc")
    misc.file_dir = str(root / "model")
    sys.modules[misc.__name__] = misc
    spec = importlib.util.spec_from_file_location("geoclip_ref.model.location_encoder",
                                                  root / "model" / "location_encoder.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.LocationEncoder().eval()  # loads weights/location_encoder_weights.pth


def test_our_encoder_with_geoclips_weights_gives_geoclips_embeddings() -> None:
    theirs = geoclips_own_location_encoder()
    ours = LocationEncoder(512, features=256, hidden=1024, layers=3).eval()
    ours.load_state_dict(geoclip.location_state())
    rng = np.random.default_rng(0)
    points = torch.tensor(np.stack([rng.uniform(-89.9, 89.9, 1000), rng.uniform(-180, 180, 1000)], 1),
                          dtype=torch.float32)
    with torch.no_grad():
        expected, got = theirs(points), ours(points)
    # Same float32 arithmetic in the same order, up to summation order inside matmuls.
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-4), (got - expected).abs().max()
    # real embeddings: non-zero, and different places get different ones
    nearest_other = torch.cdist(expected[:50], expected[:50]).topk(2, largest=False)[0][:, 1]
    assert expected.abs().mean() > 1e-3 and nearest_other.min() > 1e-3


def test_warm_start_loads_what_fits() -> None:
    spec = ModelConfig(base="tiny", location_init="geoclip")  # GeoCLIP's sizes are the defaults
    model = build_model(spec)
    state = geoclip.location_state()
    assert all(torch.equal(model.location.state_dict()[k], v) for k, v in state.items())
    assert model.logit_scale.item() == pytest.approx(3.681, abs=1e-3)
    assert model.image_head[0].in_features == 64  # tiny projects to 64, GeoCLIP's MLP takes 768: not loaded
    random_init = build_model(ModelConfig(base="tiny"))
    assert not torch.equal(random_init.location.branches[0].head.weight, model.location.branches[0].head.weight)


def test_geoclip_sizes_are_required() -> None:
    from geosolver_data.model_spec import parse_spec
    from geosolver_data.spec import SpecError
    from tests.data.test_spec import TINY

    with pytest.raises(SpecError, match="GeoCLIP's weights need GeoCLIP's sizes"):
        parse_spec({**TINY, "model": {**TINY["model"], "location_init": "geoclip"}})  # tiny's 64-d sizes


def test_the_mp16_gallery_joins_the_training_locations(learn_dataset) -> None:
    _, _, version_dir = learn_dataset
    train_only = spec_gallery(ModelConfig(gallery=("train",), gallery_resolution=3), version_dir)
    both = spec_gallery(ModelConfig(gallery=("train", "geoclip_mp16"), gallery_resolution=3), version_dir)
    assert len(both) == len(train_only) + 100_000
    assert np.abs(both[:, 0]).max() <= 90 and np.abs(both[:, 1]).max() <= 180
