"""Geolocation in one call from Python, answering exactly what `geosolver predict` answers:

    from geosolver_model import Geolocator
    geo = Geolocator.from_home()               # $GEOSOLVER_HOME's latest model and its indexes
    geo.predict("photo.jpg")[0]                # {"lat", "lon", "score", "place", "country"}

Same spec settings (`locate.*`, `index.neighbours`, `model.device`/`precision`), same model, indexes
and photo loader as the command, which is built on it."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from geosolver_data.model_spec import Spec, load_spec
from geosolver_data.store.artifact import ArtifactMissing
from geosolver_data.store.home import Home, working_home
from geosolver_model.retrieval.index import require_image_index
from geosolver_model.retrieval.locate import Locator


@dataclass
class Geolocator:
    locator: Locator
    neighbours: int = 10  # index.neighbours: reference photos whose places vote

    @classmethod
    def from_home(cls, home: str | os.PathLike[str] | None = None, model: str | None = None,
                  index: str | None = None, spec: str | os.PathLike[str] | Spec | None = None) -> Geolocator:
        """The published model `model` (default: the one the latest image index was built with) and its
        indexes under `home` (default: $GEOSOLVER_HOME, else .geosolver); `index` picks an image index
        version instead; `spec` (a path, a Spec, default: $GEOSOLVER_SPEC or the demo) gives the settings."""
        where = Home(working_home(None if home is None else str(home)))
        chosen = spec if isinstance(spec, Spec) else load_spec(spec)
        if model is not None and index is None:
            built = [a for a in where.indexes("image").all()  # image and GPS indexes share one shelf
                     if a.info.kind == "image" and a.info.model_version == model]
            if not built:
                raise ArtifactMissing(f"no image index was built with model {model} under {where.root}: "
                                      "materialise embedding_index for it")
            index = built[-1].version
        require_image_index(where, index)
        locator = Locator.open(where, index, chosen.locate, chosen.model.device, chosen.model.precision)
        return cls(locator, chosen.index.neighbours)

    @property
    def versions(self) -> dict:
        """The model, image index and GPS index versions answering."""
        return self.locator.versions

    def predict(self, photo: str | os.PathLike[str] | bytes | Image.Image, top_k: int = 5) -> list[dict]:
        """The photo's top-k candidate places, best first, no two within `locate.min_separation_km`:
        each {"lat", "lon", "score", "place", "country"}. A ValueError says why a photo cannot be read."""
        return self.locate(photo, top_k)["candidates"]

    def locate(self, photo: str | os.PathLike[str] | bytes | Image.Image, top_k: int = 5) -> dict:
        """`predict`'s candidates plus the reference photos that voted ("neighbours", with coordinates)."""
        if isinstance(photo, Image.Image):  # taken as a raw photo too (lossless): resized like the rest
            photo = _png(photo)
        source = photo if isinstance(photo, bytes) else Path(photo)
        return self.locator.locate_photo(source, top_k, self.neighbours)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "PNG")
    return out.getvalue()
