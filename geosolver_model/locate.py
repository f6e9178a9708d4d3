"""`geosolver predict`: an image's top-k locations from the GPS-gallery guess and its image neighbours.

Scoring (each part in [0, 1], averaged): the gallery part is a softmax of the refined candidates'
similarities at the model's temperature; the neighbour part is a distance-weighted vote, each of the
image's nearest reference images voting for a candidate with weight softmax(similarity) ·
exp(-distance / 25 km). Neighbour locations are candidates too, so a guess can come from either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geosolver_data.gazetteer import load_gazetteer
from geosolver_data.geo import haversine_km
from geosolver_data.store.home import Home
from geosolver_model.gallery import refine
from geosolver_model.index import IndexUnavailable, load_index, search
from geosolver_model.model import GeoRetriever
from geosolver_model.stages import PUBLISHED

VOTE_KM = 25.0
NEIGHBOUR_TEMPERATURE = 0.05


@dataclass
class Locator:
    model: GeoRetriever
    image_index: object
    image_ids: dict
    gps_index: object
    gps_ids: dict
    versions: dict

    @classmethod
    def open(cls, home: Home, index_version: str | None = None) -> Locator:
        """The latest image index (or the given version), the GPS index and model it belongs with."""
        images = home.indexes("image")
        image = images.get(index_version) if index_version else images.latest()
        image_index, image_ids, _ = load_index(image.path)
        model_version = image.manifest["model_version"]
        gps = [a for a in home.indexes("gps").all() if a.manifest["kind"] == "gps"
               and a.manifest["model_version"] == model_version]
        if not gps:
            raise IndexUnavailable(f"no GPS gallery index for model {model_version}: materialise gps_gallery_index")
        gps_index, gps_ids, _ = load_index(gps[-1].path)
        if not home.models.exists(model_version):
            raise IndexUnavailable(f"index {image.version} was built with model {model_version}, "
                                   f"which is not under {home.models.root}")
        model = GeoRetriever.from_pretrained(home.models.path(model_version) / PUBLISHED).eval()
        if model.config.embed_dim != image.manifest["index"]["dim"]:
            raise IndexUnavailable(f"model/index mismatch: model embeds {model.config.embed_dim}-d, "
                                   f"index {image.version} holds {image.manifest['index']['dim']}-d")
        return cls(model, image_index, image_ids.to_pydict(), gps_index, gps_ids.to_pydict(),
                   {"index": image.version, "gps_index": gps[-1].version, "model": model_version})

    @torch.no_grad()
    def locate_photo(self, source: Path | bytes, top_k: int = 5, neighbours: int = 10) -> dict:
        """A raw photo (a file or its bytes): upright and resized as the training images were, then located.
        A ValueError says why it cannot be read."""
        return self.locate(self.model.photo(source), top_k, neighbours)

    @torch.no_grad()
    def locate(self, image: Image.Image, top_k: int = 5, neighbours: int = 10) -> dict:
        """An image at its stored size (a shard row, or a photo through the model's `photo`)."""
        img = self.model.encode_images(self.model.pixels(image)[None])
        query = img.numpy().astype(np.float32)
        _, gps_rows = search(self.gps_index, query, top_k)
        gps_rows = gps_rows[0][gps_rows[0] >= 0]
        start = torch.tensor([[self.gps_ids["lat"][i], self.gps_ids["lon"][i]] for i in gps_rows], dtype=torch.float32)
        guesses = refine(self.model, img, start[None])
        sims, rows = search(self.image_index, query, neighbours)
        keep = rows[0] >= 0
        nb_sim, nb_rows = sims[0][keep], rows[0][keep]
        nb = np.array([[self.image_ids["lat"][i], self.image_ids["lon"][i]] for i in nb_rows]).reshape(-1, 2)
        cand = np.concatenate([guesses.latlon[0].double().numpy(), nb])
        cand_emb = self.model.encode_gps(torch.as_tensor(cand, dtype=torch.float32))
        gallery_part = torch.softmax(self.model.logit_scale.exp() * (cand_emb @ img[0]), 0).numpy()
        vote = np.zeros(len(cand))
        if len(nb):
            weights = np.exp((nb_sim - nb_sim.max()) / NEIGHBOUR_TEMPERATURE)
            weights /= weights.sum()
            dist = haversine_km(cand[:, None, 0], cand[:, None, 1], nb[None, :, 0], nb[None, :, 1])
            vote = (np.exp(-dist / VOTE_KM) * weights[None]).sum(axis=1)
        score = (gallery_part / gallery_part.max() + vote) / (2 if len(nb) else 1)
        order = np.argsort(-score, kind="stable")[:top_k]
        gaz = load_gazetteer()
        places = gaz.nearest(cand[order, 0], cand[order, 1])
        return {
            "candidates": [{"lat": round(float(cand[i, 0]), 5), "lon": round(float(cand[i, 1]), 5),
                            "score": round(float(score[i]), 4), "place": str(gaz.name[p]),
                            "country": str(gaz.country[p])} for i, p in zip(order, places, strict=True)],
            "neighbours": [{"image_id": self.image_ids["image_id"][i], "similarity": round(float(s), 4)}
                           for i, s in zip(nb_rows, nb_sim, strict=True)],
        }
