"""GeoCLIP's published weights and GPS gallery, from the `geoclip` package (MIT) that ships them.

Only the files are read: the weights as plain state dicts (`torch.load(weights_only=True)`), the
MP-16 gallery as a CSV. The package is never imported (its import pulls torchvision and a CLIP
download), so it installs without its dependencies: `pip install --no-deps geoclip==1.3.0`.

GeoCLIP's location encoder is ours with GeoCLIP's sizes (Equal Earth, random Fourier features at
σ = 2⁰, 2⁴, 2⁸, three hidden layers of 1024 per scale, a 512-d head per scale, summed); its image MLP
(768 → 768 → 512) is our image head when the vision tower projects to 768 (CLIP ViT-L/14, StreetCLIP).
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import torch

from geosolver_data.errors import GeosolverError
from geosolver_model.net.model import GeoRetriever

INSTALL = "pip install --no-deps geoclip==1.3.0"


class GeoCLIPUnavailable(GeosolverError, RuntimeError):
    """The geoclip package (its weight files) is not installed; the message says how to install it."""


def package_dir() -> Path:
    spec = importlib.util.find_spec("geoclip")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise GeoCLIPUnavailable(f"model.location_init: geoclip and model.gallery: geoclip_mp16 read GeoCLIP's "
                                 f"published weights from the geoclip package, which is not installed: {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations)))


def _weights(name: str) -> object:
    return torch.load(package_dir() / "model" / "weights" / f"{name}.pth", map_location="cpu", weights_only=True)


def location_state(branches: int = 3) -> dict[str, torch.Tensor]:
    """GeoCLIP's location encoder weights under our parameter names."""
    theirs = _weights("location_encoder_weights")
    assert isinstance(theirs, dict)
    ours = {}
    for i in range(branches):
        mine, src = f"branches.{i}", f"LocEnc{i}"
        ours[f"{mine}.b"] = theirs[f"{src}.capsule.0.b"]
        for layer, capsule in ((0, 1), (2, 3), (4, 5)):  # Linear layers between the ReLUs
            for part in ("weight", "bias"):
                ours[f"{mine}.mlp.{layer}.{part}"] = theirs[f"{src}.capsule.{capsule}.{part}"]
        for part in ("weight", "bias"):
            ours[f"{mine}.head.{part}"] = theirs[f"{src}.head.0.{part}"]
    return ours


def warm_start(model: GeoRetriever) -> list[str]:
    """Load GeoCLIP's location encoder into the model, and its image MLP and temperature where the
    sizes agree. Returns what was loaded."""
    model.location.load_state_dict(location_state(len(model.location.branches)))
    loaded = ["location encoder"]
    head = _weights("image_encoder_mlp_weights")
    assert isinstance(head, dict)
    if all(model.image_head.state_dict()[k].shape == v.shape for k, v in head.items()):
        model.image_head.load_state_dict(head)
        loaded.append("image head")
    scale = _weights("logit_scale_weights")
    with torch.no_grad():
        model.logit_scale.copy_(torch.as_tensor(scale, dtype=model.logit_scale.dtype))
    loaded.append("temperature")
    return loaded


def mp16_gallery() -> np.ndarray:
    """(100000, 2) float32 (lat, lon): GeoCLIP's GPS gallery drawn from MP-16."""
    path = package_dir() / "model" / "gps_gallery" / "coordinates_100K.csv"
    with path.open(newline="") as f:
        rows = [(float(r["LAT"]), float(r["LON"])) for r in csv.DictReader(f)]
    return np.asarray(rows, dtype=np.float32)
