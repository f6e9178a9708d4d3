"""`geosolver predict` and `play`: an image's top-k locations from the GPS-gallery guess and its image
neighbours. Evaluations score this same code as the `locator` comparator (stages.py), so the figure
reported is the predictor users get.

Scoring (`locate:` settings; each part in [0, 1]): the gallery part is a softmax of the refined
candidates' similarities at the model's temperature, scaled to a maximum of 1; the neighbour part is a
distance-weighted vote, each of the image's nearest reference images voting for a candidate with
weight softmax(similarity / vote_temperature) · exp(-distance / vote_km). A candidate's score is
(1 - vote_weight) · gallery + vote_weight · vote. Neighbour locations are candidates too, so a guess
can come from either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import torch
from PIL import Image

from geosolver_data.gazetteer import load_gazetteer
from geosolver_data.geo import haversine_km
from geosolver_data.model_spec import LocateConfig
from geosolver_data.store.home import Home
from geosolver_model.names import PUBLISHED
from geosolver_model.net.model import GeoRetriever
from geosolver_model.retrieval.gallery import refine
from geosolver_model.retrieval.index import IndexUnavailable, load_index, search


@dataclass(frozen=True)
class Ranked:
    """One image's candidates, best first: locations (K, 2), scores (K,), and its neighbours' rows and similarities."""

    latlon: np.ndarray
    score: np.ndarray
    neighbour_rows: np.ndarray
    neighbour_sims: np.ndarray


def blend(gallery_part: np.ndarray, cand: np.ndarray, nb: np.ndarray, nb_sim: np.ndarray,
          settings: LocateConfig) -> np.ndarray:
    """Scores of candidates (C, 2) from their gallery part (C,) and the neighbours' (N, 2) vote."""
    if not len(nb):
        return gallery_part / gallery_part.max()
    weights = np.exp((nb_sim - nb_sim.max()) / settings.vote_temperature)
    weights /= weights.sum()
    dist = haversine_km(cand[:, None, 0], cand[:, None, 1], nb[None, :, 0], nb[None, :, 1])
    vote = (np.exp(-dist / settings.vote_km) * weights[None]).sum(axis=1)
    return (1 - settings.vote_weight) * gallery_part / gallery_part.max() + settings.vote_weight * vote


def distinct(cand: np.ndarray, order: np.ndarray, top_k: int, min_km: float) -> np.ndarray:
    """The first `top_k` of `order` (indices into cand (C, 2), best first) that are distinct places: each
    farther than `min_km` from every better one kept (a neighbour 25 m from a refined gallery point is the
    same answer twice)."""
    kept: list[int] = []
    for i in order.tolist():
        if len(kept) == top_k:
            break
        near = haversine_km(cand[i, 0], cand[i, 1], cand[kept, 0], cand[kept, 1]) if kept else np.array([np.inf])
        if min_km <= 0 or near.min() > min_km:
            kept.append(i)
    return np.asarray(kept, dtype=np.int64)


@dataclass
class Locator:
    model: GeoRetriever
    image_index: faiss.Index  # image embeddings of the reference rows (train + val)
    image_ids: dict  # their image_id, lat, lon columns
    gps_index: faiss.Index  # location-encoder embeddings of the GPS gallery
    gps_ids: dict  # its lat, lon columns
    versions: dict = field(default_factory=dict)
    settings: LocateConfig = field(default_factory=LocateConfig)

    def __post_init__(self) -> None:
        # (N, 2) degrees of the reference rows and of the gallery, made once: every query indexes them
        self.ref_latlon = np.stack([np.asarray(self.image_ids["lat"]), np.asarray(self.image_ids["lon"])], axis=1)
        self.gps_latlon = np.stack([np.asarray(self.gps_ids["lat"]), np.asarray(self.gps_ids["lon"])], axis=1)

    @classmethod
    def open(cls, home: Home, index_version: str | None = None, settings: LocateConfig | None = None,
             device: str = "auto", precision: str = "auto") -> Locator:
        """The latest image index (or the given version), the GPS index and model it belongs with."""
        images = home.indexes("image")
        image = images.get(index_version) if index_version else images.latest()
        if image.info.kind != "image":  # image and GPS indexes share one folder
            raise IndexUnavailable(f"index {image.version} is a {image.info.kind} index, not an image index")
        image_index, image_ids, _ = load_index(image.path)
        model_version = image.info.model_version
        gps = [a for a in home.indexes("gps").all() if a.info.kind == "gps" and a.info.model_version == model_version]
        if not gps:
            raise IndexUnavailable(f"no GPS gallery index for model {model_version}: materialise gps_gallery_index")
        gps_index, gps_ids, _ = load_index(gps[-1].path)
        if not home.models.exists(model_version):
            raise IndexUnavailable(f"index {image.version} was built with model {model_version}, "
                                   f"which is not under {home.models.root}")
        weights = home.models.require_intact(model_version, PUBLISHED).path / PUBLISHED  # a flipped byte is refused
        model = GeoRetriever.from_pretrained(weights, device, precision).eval()
        if model.config.embed_dim != image.info.index.dim:
            raise IndexUnavailable(f"model/index mismatch: model embeds {model.config.embed_dim}-d, "
                                   f"index {image.version} holds {image.info.index.dim}-d")
        return cls(model, image_index, image_ids.to_pydict(), gps_index, gps_ids.to_pydict(),
                   {"index": image.version, "gps_index": gps[-1].version, "model": model_version},
                   settings or LocateConfig())

    @torch.no_grad()
    def rank(self, images: list[Image.Image], top_k: int = 5, neighbours: int = 10) -> list[Ranked]:
        """Images at their stored size -> each one's ranked candidates (the model runs on its device)."""
        return self.rank_embedded(self.model.encode_images(torch.stack([self.model.pixels(im) for im in images])),
                                  top_k, neighbours)

    @torch.no_grad()
    def rank_embedded(self, img: torch.Tensor, top_k: int = 5, neighbours: int = 10) -> list[Ranked]:
        """Image embeddings (B, D) on the model's device -> each image's ranked candidates."""
        query = img.cpu().numpy().astype(np.float32)
        k = min(top_k, self.gps_index.ntotal)
        _, gps_rows = search(self.gps_index, query, k)
        rows = np.maximum(gps_rows, 0)  # -1 only where the gallery has fewer than k points, excluded by k
        start = torch.as_tensor(self.gps_latlon[rows], dtype=torch.float32)
        refined = refine(self.model, img, start.to(img.device))
        refined_latlon = refined.latlon.double().cpu().numpy()
        nb_sims, nb_rows = search(self.image_index, query, min(neighbours, self.image_index.ntotal))
        scale = self.model.logit_scale.exp()
        ranked = []
        for i in range(len(img)):
            keep = nb_rows[i] >= 0
            sims, nrows = nb_sims[i][keep], nb_rows[i][keep]
            nb = self.ref_latlon[nrows].reshape(-1, 2)
            cand = np.concatenate([refined_latlon[i], nb])
            cand_emb = self.model.encode_gps(torch.as_tensor(cand, dtype=torch.float32))
            gallery_part = torch.softmax(scale * (cand_emb @ img[i]), 0).cpu().numpy()
            score = blend(gallery_part, cand, nb, sims, self.settings)
            order = distinct(cand, np.argsort(-score, kind="stable"), top_k, self.settings.min_separation_km)
            ranked.append(Ranked(cand[order], score[order], nrows, sims))
        return ranked

    def locate_photo(self, source: Path | bytes, top_k: int = 5, neighbours: int = 10) -> dict:
        """A raw photo (a file or its bytes): upright and resized as the training images were, then located.
        A ValueError says why it cannot be read."""
        return self.locate(self.model.photo(source), top_k, neighbours)

    def locate(self, image: Image.Image, top_k: int = 5, neighbours: int = 10) -> dict:
        """An image at its stored size (a shard row, or a photo through the model's `photo`)."""
        found = self.rank([image], top_k, neighbours)[0]
        gaz = load_gazetteer()
        places = gaz.nearest(found.latlon[:, 0], found.latlon[:, 1])
        return {
            "candidates": [{"lat": round(float(ll[0]), 5), "lon": round(float(ll[1]), 5),
                            "score": round(float(s), 4), "place": str(gaz.name[p]), "country": str(gaz.country[p])}
                           for ll, s, p in zip(found.latlon, found.score, places, strict=True)],
            "neighbours": [{"image_id": self.image_ids["image_id"][i], "similarity": round(float(s), 4),
                            "lat": round(float(self.ref_latlon[i, 0]), 5),
                            "lon": round(float(self.ref_latlon[i, 1]), 5)}
                           for i, s in zip(found.neighbour_rows, found.neighbour_sims, strict=True)],
        }
