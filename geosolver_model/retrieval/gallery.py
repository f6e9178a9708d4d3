"""The GPS gallery: the candidate locations a guess is chosen from, and choosing among them: the
nearest gallery embeddings, then a local refinement.

The default gallery is a grid, split-independent: the centres of the H3 cells (at
`model.gallery_resolution`; res 5 is ~250 km², ~65K cells) that hold a populated place of the offline
gazetteer, where street-level photos are taken. A gallery of training locations cannot answer inside a
val/test split block (nothing of those blocks is in it), so with whole-continent blocks its acc@1km and
acc@25km were zero by construction.

Refinement (after GeoCLIP's): around each of the top candidates, score a small ring of points with
the location encoder and move to the best one, so a guess is not limited to gallery points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from geosolver_data.gazetteer import load_gazetteer
from geosolver_data.geo import cell_centres, h3_cells
from geosolver_data.model_spec import ModelConfig
from geosolver_data.store.manifests import read_dataset_manifest
from geosolver_model.net.model import GeoRetriever


def spec_gallery(model: ModelConfig, version_dir: Path) -> np.ndarray:
    """The gallery the spec asks for (`model.gallery`): the populated-cell grid, the training locations,
    GeoCLIP's MP-16 100K, or several joined."""
    parts = []
    if "grid" in model.gallery:
        parts.append(grid_gallery(model.gallery_resolution))
    if "train" in model.gallery:
        parts.append(build_gallery(version_dir, model.gallery_resolution))
    if "geoclip_mp16" in model.gallery:
        from geosolver_model.net.geoclip import mp16_gallery

        parts.append(mp16_gallery())
    return np.concatenate(parts)


def grid_gallery(resolution: int) -> np.ndarray:
    """(G, 2) float32 (lat, lon): centres of the H3 cells at `resolution` holding a gazetteer place, sorted."""
    gaz = load_gazetteer()
    cells = np.unique(h3_cells(gaz.lat, gaz.lon, [resolution])[resolution])
    return cell_centres(cells).astype(np.float32)


def build_gallery(version_dir: Path, resolution: int, split: str = "train") -> np.ndarray:
    """(G, 2) float32 (lat, lon): the mean location of the split's images in each H3 cell."""
    paths = read_dataset_manifest(version_dir).shard_paths(version_dir, split)
    table = pq.ParquetDataset(paths).read(columns=["lat", "lon"])
    lat, lon = table.column("lat").to_numpy(), table.column("lon").to_numpy()
    cells = h3_cells(lat, lon, [resolution])[resolution]
    _, inverse = np.unique(cells, return_inverse=True)
    counts = np.bincount(inverse)
    # mean of unit vectors, not of degrees, so cells on the antimeridian average correctly
    la, lo = np.radians(lat), np.radians(lon)
    xyz = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)
    mean = np.stack([np.bincount(inverse, xyz[:, i]) for i in range(3)], axis=1) / counts[:, None]
    g_lat = np.degrees(np.arctan2(mean[:, 2], np.hypot(mean[:, 0], mean[:, 1])))
    g_lon = np.degrees(np.arctan2(mean[:, 1], mean[:, 0]))
    return np.stack([g_lat, g_lon], axis=1).astype(np.float32)


_RING_KM = (2.0, 5.0, 20.0, 60.0)  # 2 km: a grid cell centre (res 5: ~4 km to its corners) can move under 1 km
_RING_POINTS = 8


@dataclass(frozen=True)
class Guesses:
    latlon: torch.Tensor  # (B, K, 2) degrees, best first
    score: torch.Tensor  # (B, K) cosine similarity


def _rings(centres: torch.Tensor) -> torch.Tensor:
    """(N, 2) -> (N, 1 + R*P, 2): each centre and points on rings around it (on the centres' device)."""
    angles = torch.arange(_RING_POINTS, dtype=torch.float32, device=centres.device) * (2 * torch.pi / _RING_POINTS)
    offsets = [torch.zeros(1, 2, device=centres.device)]
    for km in _RING_KM:
        offsets.append(torch.stack([torch.cos(angles), torch.sin(angles)], dim=1) * km)
    off = torch.cat(offsets)  # (1+R*P, 2) km north, east
    lat = centres[:, None, 0] + off[None, :, 0] / 111.32
    coslat = torch.cos(torch.deg2rad(centres[:, None, 0])).clamp(min=0.05)
    lon = centres[:, None, 1] + off[None, :, 1] / (111.32 * coslat)
    lon = (lon + 180) % 360 - 180
    return torch.stack([lat.clamp(-90, 90), lon], dim=-1)


GPS_CHUNK = 8192  # gallery points encoded at once: bounds the encoder's activations for a 100K gallery


@torch.no_grad()
def gallery_embeddings(model: GeoRetriever, gallery: torch.Tensor) -> torch.Tensor:
    """(G, 2) degrees -> (G, D) unit vectors on the model's device, encoded in chunks."""
    if not len(gallery):
        return torch.zeros(0, model.config.embed_dim, device=model.device)
    return torch.cat([model.encode_gps(gallery[i:i + GPS_CHUNK]) for i in range(0, len(gallery), GPS_CHUNK)])


@torch.no_grad()
def refine(model: GeoRetriever, img: torch.Tensor, latlon: torch.Tensor) -> Guesses:
    """Move each candidate (B, K, 2) to the best-scoring point on its rings; re-sort by score."""
    b, k = latlon.shape[:2]
    cand = _rings(latlon.reshape(-1, 2))  # (B*K, P, 2)
    emb = model.encode_gps(cand.reshape(-1, 2)).reshape(b, k, cand.shape[1], -1)
    s = torch.einsum("bkpd,bd->bkp", emb, img)
    best = s.argmax(dim=2)  # (B, K)
    score = s.gather(2, best[..., None])[..., 0]
    moved = cand.reshape(b, k, cand.shape[1], 2).gather(2, best[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
    score, order = score.sort(dim=1, descending=True)
    return Guesses(latlon=moved.gather(1, order[..., None].expand(-1, -1, 2)), score=score)


@torch.no_grad()
def predict(model: GeoRetriever, pixels: torch.Tensor, gallery: torch.Tensor, gallery_emb: torch.Tensor,
            top_k: int = 5, refine_guesses: bool = True) -> Guesses:
    """pixels (B, 3, S, S), gallery (G, 2) with embeddings (G, D) -> top-k guesses per image."""
    img = model.encode_images(pixels)  # (B, D) on the model's device, like the gallery
    score, idx = (img @ gallery_emb.T).topk(min(top_k, len(gallery)), dim=1)
    if refine_guesses:
        return refine(model, img, gallery[idx])
    return Guesses(latlon=gallery[idx], score=score)
