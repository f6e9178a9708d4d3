"""A refresh at OpenStreetView-5M size (issue #14): what a weekly refresh with nothing new costs.

A fabricated metadata CSV of N rows in OSV-5M's real column layout (train.csv: id, latitude,
longitude, thumb_original_url, country, sequence, captured_at, lon_bin, lat_bin, cell, land_cover,
road_index, drive_side, climate, soil, dist_sea, region, sub-region, city, unique_region,
unique_sub-region, unique_city, unique_country, creator_username, creator_id), with a fraction of its
images present in 10 zip archives (small JPEGs: the listing, the ledger and consolidation are what is
measured, not image work). Every other row ends as a final `image_missing` reject, as on a machine
that downloaded part of the dataset. One region covers the world.

Measured, each in its own process (wall time and peak RSS of that process and its workers):
  1. the first ingest;
  2. a refresh with nothing new: the goal is <= 20 s and <= 1 GB at 1,000,000 rows, and no file
     written (every file under work/, the ledger's included, keeps its inode and mtime).

Run from the repo root: .venv/bin/python -m bench.bench_refresh [--rows 1000000] [--images 20000]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from PIL import Image

COLUMNS = ["id", "latitude", "longitude", "thumb_original_url", "country", "sequence", "captured_at", "lon_bin",
           "lat_bin", "cell", "land_cover", "road_index", "drive_side", "climate", "soil", "dist_sea", "region",
           "sub-region", "city", "unique_region", "unique_sub-region", "unique_city", "unique_country",
           "creator_username", "creator_id"]

_CHILD = """
import json, resource, sys
from pathlib import Path
from geosolver_data.spec import parse_spec
from geosolver_data.stages import ingest_region
from geosolver_data.store.home import DatasetLayout
spec = parse_spec(json.loads(sys.argv[1]))
stats = ingest_region(spec, DatasetLayout(Path(sys.argv[2]), spec.name), "world", log=lambda _: None)["osv5m"]
peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(json.dumps({"ingested": stats.ingested, "already_done": stats.already_done, "rows": stats.total_rows,
                  "peak_rss_mb": round(peak / 1024)}))  # Linux: KiB; this process or its largest worker
"""


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def fabricate(root: Path, rows: int, images: int) -> tuple[Path, Path]:
    rng = random.Random(0)
    folder = root / "images"
    folder.mkdir(parents=True)
    present = set(rng.sample(range(rows), images))
    jpeg = io.BytesIO()
    per_zip = -(-images // 10)
    archives = [zipfile.ZipFile(folder / f"{z:02d}.zip", "w") for z in range(10)]
    for n, i in enumerate(sorted(present)):
        jpeg.seek(0)
        jpeg.truncate()
        Image.new("RGB", (96, 72), (i % 251, (i // 251) % 251, 120)).save(jpeg, "JPEG", quality=80)
        archives[n // per_zip].writestr(f"{n // per_zip:02d}/{1_000_000_000 + i}.jpg", jpeg.getvalue())
    for archive in archives:
        archive.close()
    metadata = root / "train.csv"
    with metadata.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i in range(rows):
            lat, lon = rng.uniform(-55, 70), rng.uniform(-180, 180)
            writer.writerow([1_000_000_000 + i, round(lat, 6), round(lon, 6),
                             f"https://example.invalid/{i}.jpg", "FR", f"seq{i // 20}", 1_500_000_000 + i,
                             int(lon), int(lat), f"{int(lat)}_{int(lon)}", "urban", 3, "right", 8, 2, 12.5,
                             "Region", "Sub", "City", "FR_Region", "FR_Sub", "FR_City", "FR",
                             f"user{i % 5000}", i % 5000])
    return metadata, folder


def run(spec: dict, home: Path) -> dict:
    """One ingest in its own process: wall seconds, and the peak RSS of that process or its largest worker."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec), str(home)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--images", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        metadata, images = fabricate(root, args.rows, args.images)
        emit(bench="fabricated", rows=args.rows, images=args.images, seconds=round(time.perf_counter() - start, 1),
             csv_mb=round(metadata.stat().st_size / 1e6, 1))
        spec = {"name": "osv", "regions": [{"name": "world", "bbox": [-180, -90, 180, 90]}],
                "sources": [{"type": "osv5m", "path": str(metadata), "images": str(images)}]}
        home = root / "home"
        first = run(spec, home)
        emit(bench="osv5m_first_ingest", **first)
        work = home / "work" / "osv"
        stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in work.rglob("*") if p.is_file()}
        refresh = run(spec, home)
        now = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in work.rglob("*") if p.is_file()}
        rewritten = sorted(p.relative_to(work).as_posix() for p in now.keys() | stamps.keys()
                           if now.get(p) != stamps.get(p))
        emit(bench="osv5m_refresh_nothing_new", **refresh, files_rewritten=rewritten, goal_s=20, goal_mb=1024)


if __name__ == "__main__":
    main()
