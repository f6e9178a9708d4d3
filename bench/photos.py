"""Distinct photo-like JPEGs for the ingest benchmarks: every image different (no repeated pool a cache
or a decoder could profit from), with a photo's spread of detail: smooth light and colour, structure
at a few scales, sensor-like grain. At 1024x768 and quality 90 they weigh ~150-250 KB, as street-level
photos of that size do, so decode, transfer and Parquet costs are realistic.

Generated in parallel and cached on disk by (count, size, version): a rerun of a bench reuses them.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from geosolver_data.ingest.sources.scene import render_scene

VERSION = 1


def photo(seed: int, size: tuple[int, int] = (1024, 768), quality: int = 90) -> bytes:
    """A street-like layout (sky, ground, road, facades: hard edges) under light and texture at four
    scales (mostly in brightness, a little in colour, as in photos) and sensor grain."""
    rng = np.random.default_rng(seed)
    w, h = size
    lat, lon = rng.uniform(-60, 70), rng.uniform(-180, 180)
    scene = render_scene(lat, lon, "XX", int(rng.integers(100, 5_000_000)), rng)
    scene = scene.resize((w, h), Image.Resampling.BILINEAR)
    pixels = np.asarray(scene, dtype=np.float32)
    light = np.zeros((h, w), dtype=np.float32)
    for cells, weight in ((3, 35.0), (12, 16.0), (48, 10.0), (192, 7.0)):
        grid = rng.integers(0, 256, size=(max(2, cells * h // w), cells), dtype=np.uint8)
        up = Image.fromarray(grid, "L").resize((w, h), Image.Resampling.BICUBIC)
        light += (np.asarray(up, dtype=np.float32) / 127.5 - 1) * weight
    tint = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    pixels = pixels * 0.8 * tint + light[..., None] + rng.normal(0, 3, size=(h, w, 1)).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def _write(args: tuple[Path, int, tuple[int, int]]) -> None:
    folder, seed, size = args
    path = folder / f"{seed:07d}.jpg"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(photo(seed, size))
        tmp.rename(path)


def photo_folder(n: int, cache: Path, size: tuple[int, int] = (1024, 768)) -> Path:
    """A folder of n distinct photos, 0000000.jpg ... (made once, in parallel on every core)."""
    folder = cache / f"photos-v{VERSION}-{size[0]}x{size[1]}"
    folder.mkdir(parents=True, exist_ok=True)
    missing = [(folder, i, size) for i in range(n) if not (folder / f"{i:07d}.jpg").exists()]
    if missing:
        with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
            list(pool.map(_write, missing, chunksize=16))
    return folder
