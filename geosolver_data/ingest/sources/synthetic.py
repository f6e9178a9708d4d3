"""The offline demo source: a folder of geotagged photos at real populated places.

It writes what a camera would: JPEG/PNG/WebP files with EXIF GPS, capture time and, for some,
a rotated sensor image plus an EXIF orientation tag. The folder is then read by the local
source, so the demo exercises the same EXIF path as your own photos. It plants exact duplicates,
near duplicates, same-place repeats and broken files so that dedup and rejects have real work.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from geosolver_data.gazetteer import load_gazetteer
from geosolver_data.ingest.exif import make_exif
from geosolver_data.ingest.sources.scene import SceneDraws, draw_scene, paint_scene, render_scene
from geosolver_data.spec import Region, SourceSpec
from geosolver_data.store.atomic import publish_dir, staging_dir

_EPOCH = datetime(2016, 1, 1, tzinfo=UTC)
# Not hidden: a remote home's mirror leaves hidden files (temporaries) behind, and a fresh pod must
# find this marker to reuse the photos instead of writing them again.
_COMPLETE = "complete.json"


def _region_seed(seed: int, region: Region) -> list[int]:
    digest = hashlib.sha256(f"{region.name}:{region.bbox}".encode()).digest()
    return [seed, int.from_bytes(digest[:8], "little")]


def _places_in(region: Region, regions: tuple[Region, ...]) -> np.ndarray:
    """Indices of gazetteer places whose first containing region (spec order) is `region`."""
    gaz = load_gazetteer()
    owner = np.full(len(gaz.lat), -1)
    for i, r in reversed(list(enumerate(regions))):
        min_lon, min_lat, max_lon, max_lat = r.bbox
        inside = (gaz.lat >= min_lat) & (gaz.lat <= max_lat) & (gaz.lon >= min_lon) & (gaz.lon <= max_lon)
        owner[inside] = i
    return np.flatnonzero(owner == regions.index(region))


def _offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return lat + north_m / 111_320.0, lon + east_m / (111_320.0 * max(0.05, math.cos(math.radians(lat))))


def _camera(rng: np.random.Generator) -> tuple[bool, str]:
    """How a camera stores a frame: some stored rotated with an orientation tag; mostly JPEG, some
    PNG/WebP. Drawn in sequence, right after the scene's own draws."""
    rotated = rng.random() < 0.1
    kind = rng.random()
    return rotated, ".png" if kind < 0.1 else ".webp" if kind < 0.2 else ".jpg"


def _paint_and_save(path: Path, lat: float, lon: float, country: str, draws: SceneDraws, rotated: bool,
                    when: datetime) -> None:
    """Paint a drawn scene and save it as a camera would (no random draw: safe on any thread)."""
    image, orientation = paint_scene(lat, lon, country, draws), 1
    if rotated:
        image, orientation = image.transpose(Image.Transpose.ROTATE_90), 6  # 6: rotate 90 CW to view
    exif = make_exif(lat, lon, when, orientation)
    if path.suffix == ".png":
        image.save(path, "PNG", exif=exif)
    elif path.suffix == ".webp":
        image.save(path, "WEBP", exif=exif, quality=92)
    else:
        image.save(path, "JPEG", exif=exif, quality=92)


class _Painters:
    """Paints and saves scenes on threads while the caller draws the next ones.

    The random draws must stay in one sequence (same seed, same bytes), but painting and encoding
    (PNG and WebP above all) are most of a scene's cost, and numpy and Pillow release the GIL for
    them, so threads share the work across cores without copying any pixels between processes.
    """

    def __init__(self, threads: int) -> None:
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="synthetic")
        self.pending: list[Future[None]] = []
        self.limit = 4 * max(1, threads)  # frames drawn and not yet saved (each holds ~5 MB of noise)

    def frame(self, path: Path, lat: float, lon: float, country: str, population: int, when: datetime,
              rng: np.random.Generator) -> Path:
        """Draw one frame now, paint and save it later; returns the path it will have."""
        draws = draw_scene(population, rng)
        rotated, suffix = _camera(rng)
        path = path.with_suffix(suffix)
        self.pending.append(self.pool.submit(_paint_and_save, path, lat, lon, country, draws, rotated, when))
        if len(self.pending) > self.limit:
            self.pending.pop(0).result()
        return path

    def wait(self) -> None:
        """Every frame submitted so far is on disk (or its error is raised)."""
        while self.pending:
            self.pending.pop(0).result()

    def close(self) -> None:
        for future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True)


def _write_broken(folder: Path, scene: Image.Image, region: Region, when: datetime) -> None:
    """Files that must end in the rejects table, one of each kind."""
    folder.mkdir(parents=True)
    good = folder / "truncated.jpg"
    lat, lon = (region.bbox[1] + region.bbox[3]) / 2, (region.bbox[0] + region.bbox[2]) / 2
    scene.save(good, "JPEG", exif=make_exif(lat, lon, when), quality=90)
    good.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (folder / "notes.jpg").write_text("<html>not an image</html>")
    scene.save(folder / "no_gps.jpg", "JPEG", quality=90)
    scene.save(folder / "null_island.jpg", "JPEG", exif=make_exif(0.0, 0.0, when), quality=90)


def _write_sequence(folder: Path, lat: float, lon: float, country: str, population: int,
                    src: SourceSpec, rng: np.random.Generator, painters: _Painters) -> list[Path]:
    folder.mkdir(parents=True)
    when = _EPOCH + timedelta(seconds=int(rng.integers(0, 9 * 365 * 86400)))
    bearing = rng.uniform(0, 2 * math.pi)
    written = []
    for step in range(int(rng.integers(1, 5))):
        plat, plon = _offset(lat, lon, 25.0 * step * math.cos(bearing), 25.0 * step * math.sin(bearing))
        written.append(painters.frame(folder / f"{step:03d}", plat, plon, country, population,
                                      when + timedelta(seconds=5 * step), rng))
        if rng.random() < src.same_place_share:  # the car stood still: another frame 1-3 m away
            slat, slon = _offset(plat, plon, rng.uniform(1, 3), 0.0)
            painters.frame(folder / f"{step:03d}b", slat, slon, country, population,
                           when + timedelta(seconds=5 * step + 1), rng)
    return written


def _plant_duplicates(root: Path, originals: list[Path], src: SourceSpec, rng: np.random.Generator) -> None:
    """Exact copies and near copies (re-encoded, rescaled, re-lit) in other folders."""
    dup_dir = root / "reuploads"
    dup_dir.mkdir()
    n_exact = round(len(originals) * src.exact_duplicate_share)
    n_near = round(len(originals) * src.near_duplicate_share)
    picks = rng.choice(len(originals), size=min(len(originals), n_exact + n_near), replace=False)
    for k, idx in enumerate(picks):
        original = originals[idx]
        if k < n_exact:
            shutil.copyfile(original, dup_dir / f"copy_{k:04d}{original.suffix}")
            continue
        with Image.open(original) as im:
            exif = im.getexif()
            near = ImageEnhance.Brightness(im.convert("RGB")).enhance(rng.uniform(0.95, 1.05))
            near = near.resize((int(near.width * 0.9), int(near.height * 0.9)), Image.Resampling.BILINEAR)
            near.save(dup_dir / f"near_{k:04d}.jpg", "JPEG", quality=int(rng.integers(70, 85)), exif=exif)


def synthesize_region(root: Path, region: Region, regions: tuple[Region, ...], src: SourceSpec,
                      threads: int = 0) -> Path:
    """Write (once) the synthetic photos of one region under root/<region>; returns that folder.

    Deterministic in (seed, region, parameters), whatever `threads` paint (0: one per core);
    published atomically, so a crash mid-write leaves nothing half-done and a rerun rewrites it
    from scratch.
    """
    final = root / region.name
    params = {"seed": src.seed, "per_region": src.per_region, "bbox": list(region.bbox),
              "shares": [src.exact_duplicate_share, src.near_duplicate_share, src.same_place_share]}
    marker = final / _COMPLETE
    if marker.exists() and json.loads(marker.read_text()) == params:
        return final
    if final.exists():
        shutil.rmtree(final)  # written with other parameters: rebuild
    rng = np.random.default_rng(_region_seed(src.seed, region))
    gaz = load_gazetteer()
    candidates = _places_in(region, regions)
    if len(candidates) == 0:
        raise ValueError(f"region {region.name!r} {list(region.bbox)} holds no populated place to synthesise")
    weights = gaz.population[candidates].astype(np.float64) ** 0.8  # street imagery clusters in cities
    staging = staging_dir(root)
    originals: list[Path] = []
    per_sequence = 2.5  # mean images per sequence
    painters = _Painters(threads or os.cpu_count() or 1)
    try:
        for s in range(max(1, round(src.per_region / per_sequence))):
            p = int(rng.choice(candidates, p=weights / weights.sum()))
            lat, lon = _offset(gaz.lat[p], gaz.lon[p], rng.normal(0, 1500), rng.normal(0, 1500))
            lat = float(np.clip(lat, region.bbox[1], region.bbox[3]))
            lon = float(np.clip(lon, region.bbox[0], region.bbox[2]))
            originals += _write_sequence(staging / f"seq_{s:05d}", lat, lon, str(gaz.country[p]),
                                         int(gaz.population[p]), src, rng, painters)
        painters.wait()  # the duplicates are made from the originals' files
    finally:
        painters.close()
    _plant_duplicates(staging, originals, src, rng)
    _write_broken(staging / "broken", render_scene(0, 0, "XX", 10, rng), region, _EPOCH)
    (staging / _COMPLETE).write_text(json.dumps(params))
    publish_dir(staging, final)
    return final
