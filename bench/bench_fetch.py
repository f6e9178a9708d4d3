"""Ingest over HTTP (issue: real sources and a fast fetcher). Prints one JSON line per figure.

Side by side in one run, on the same loopback server, URL list and output settings (1024x768 JPEGs
in, largest side resized to 336 px, JPEG quality 90, Parquet out):
  * Geosolver's URL-list ingest (aiohttp fetcher + process pool: decode, resize, JPEG, sha256, pHash);
  * img2dataset, the usual tool for this job, from its own virtual environment (its pins clash with
    ours): python3 -m venv /tmp/i2d && /tmp/i2d/bin/pip install img2dataset;
  * Pillow's raw decode rate of the same JPEGs on all cores, the ceiling a decoding pipeline is
    usually measured against (Geosolver decodes with libjpeg's DCT scaling, so it can pass 100%).

Run from the repo root: .venv/bin/python -m bench.bench_fetch [--images 2000] [--img2dataset PATH]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from aiohttp import web
from PIL import Image

from geosolver_data.spec import parse_spec
from geosolver_data.stages import ingest_region
from geosolver_data.store.home import DatasetLayout
from tests.data.images_util import encode, noise_image

DISTINCT = 64


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def photos() -> list[bytes]:
    return [encode(noise_image(i, (1024, 768)), quality=90) for i in range(DISTINCT)]


def serve(port: int) -> None:
    bodies = photos()

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=bodies[int(request.match_info["n"]) % DISTINCT], content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/img/{n}.jpg", image)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, reuse_port=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_list(path: Path, base: str, n: int) -> None:
    rng = random.Random(0)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["url", "lat", "lon"])
        for i in range(n):
            writer.writerow([f"{base}/img/{i}.jpg", round(rng.uniform(-60, 70), 6), round(rng.uniform(-179, 179), 6)])


def run_geosolver(listing: Path, work: Path, workers: int) -> tuple[float, int]:
    spec = parse_spec({
        "name": "bench", "regions": [{"name": "world", "bbox": [-180, -90, 180, 90]}],
        "sources": [{"type": "urls", "path": str(listing), "requests_per_second": 0, "concurrency": 64}],
        "image": {"max_side": 336, "jpeg_quality": 90}, "workers": workers,
    })
    start = time.perf_counter()
    stats = ingest_region(spec, DatasetLayout(work, spec.name), "world", log=lambda _: None)["urls"]
    return time.perf_counter() - start, stats.ingested


def run_img2dataset(exe: str, listing: Path, out: Path, workers: int) -> tuple[float, int]:
    cmd = [exe, "--url_list", str(listing), "--input_format", "csv", "--url_col", "url",
           "--save_additional_columns", '["lat","lon"]', "--output_format", "parquet", "--output_folder", str(out),
           "--image_size", "336", "--resize_mode", "keep_ratio_largest", "--encode_quality", "90",
           "--processes_count", str(workers), "--thread_count", "64", "--number_sample_per_shard", "10000",
           "--enable_wandb", "False", "--retries", "0"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    ok = sum(json.loads(p.read_text()).get("successes", 0) for p in out.glob("*_stats.json"))
    return elapsed, ok


def pillow_decode_rate(n: int = 200) -> float:
    """Full decodes per second on one core."""
    bodies = photos()
    start = time.perf_counter()
    for i in range(n):
        Image.open(io.BytesIO(bodies[i % DISTINCT])).load()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--img2dataset", default=shutil.which("img2dataset") or "/tmp/i2d/bin/img2dataset")
    parser.add_argument("--server-processes", type=int, default=0,
                        help="image server processes sharing the port (default: one per 4 cores)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    port = free_port()
    ctx = multiprocessing.get_context("spawn")
    servers = [ctx.Process(target=serve, args=(port,), daemon=True)
               for _ in range(args.server_processes or max(1, cores // 4))]
    for server in servers:
        server.start()
    time.sleep(3)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            listing = Path(tmp) / "urls.csv"
            write_list(listing, f"http://127.0.0.1:{port}", args.images)
            decode = pillow_decode_rate()
            ours_s, ours_n = run_geosolver(listing, Path(tmp) / "ours", cores)
            ours = ours_n / ours_s
            emit(bench="ingest_http_geosolver", images=ours_n, seconds=round(ours_s, 2), images_per_s=round(ours, 1),
                 cores=cores, share_of_pillow_full_decode=round(ours / (decode * cores), 2),
                 pillow_full_decode_per_s_all_cores=round(decode * cores, 1))
            if not Path(args.img2dataset).exists():
                emit(bench="ingest_http_img2dataset", skipped=f"{args.img2dataset} not found (see the docstring)")
                return
            theirs_s, theirs_n = run_img2dataset(args.img2dataset, listing, Path(tmp) / "i2d", cores)
            theirs = theirs_n / theirs_s
            emit(bench="ingest_http_img2dataset", images=theirs_n, seconds=round(theirs_s, 2),
                 images_per_s=round(theirs, 1), geosolver_speedup=round(ours / theirs, 2))
    finally:
        for server in servers:
            server.terminate()


if __name__ == "__main__":
    main()
