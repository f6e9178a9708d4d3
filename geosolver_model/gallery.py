"""The GPS gallery: candidate locations a guess is chosen from (the training locations, one per H3 cell)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from geosolver_data.geo import h3_cells


def build_gallery(version_dir: Path, resolution: int, split: str = "train") -> np.ndarray:
    """(G, 2) float32 (lat, lon): the mean location of the split's images in each H3 cell."""
    manifest = json.loads((version_dir / "manifest.json").read_text())
    paths = [version_dir / s["path"] for s in manifest["shards"] if s["split"] == split]
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
