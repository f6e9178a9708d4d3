"""Ingest end to end, each tool run the way its user runs it, side by side in one run (issue #14).

The same loopback image server, the same URL list of N distinct photo-like 1024x768 JPEGs
(bench/photos.py: no repeated pool), the same output semantics (short side resized to 336 px, aspect
kept; JPEG quality 90; Parquet out):

  * Geosolver: `dagster asset materialize -m pipelines.definitions --select raw_images --partition world`
    against a fresh Dagster instance, a `urls` source and this machine's cores, as a user's CI runs it.
    Its wall time includes Dagster's start-up, the code location, the executor's processes and the
    consolidation of the region's table; its step time (STEP_START to STEP_SUCCESS from the run's
    event log) is reported too. What neither figure includes: `dagster instance migrate`, done once
    beforehand as `make init` does.
  * img2dataset, as its README recommends for a URL list: one process per core, `thread_count` 64 (its
    recommended range is 32-256 per process), `resize_mode keep_ratio` (smallest side to image_size,
    what Geosolver's default `fit: short_side` does), `encode_quality` 90, Parquet output, and shards
    of N / (2 x processes) samples so that every process has work (its default of 10,000 samples per
    shard would leave one process idle below 10,000 images). From its own virtual environment: its
    pins clash with ours (python3 -m venv /tmp/i2d && /tmp/i2d/bin/pip install img2dataset).
  * Both run with Python's bytecode cache on, as on a user's machine: PYTHONDONTWRITEBYTECODE (set on
    some CI images) is dropped from their environment, and our sources are compiled once beforehand,
    as a non-editable install would have them (img2dataset's are, by pip). Without this, each of the
    processes of a Dagster run compiles the project's modules from source again.
  * The box's decode limits, measured in the same run on the same photos: Pillow's full decode and
    its draft decode (libjpeg DCT scaling to the smallest size >= 336 px on the short side, what
    Geosolver uses) per core, times the cores; and the image-work limit: the whole per-image work of
    the step (`process_image`: draft decode, resize to 448x336, JPEG, sha256, pHash) per core, times
    the cores. It prints that work's stages in ms per image, and the image-work limit's share of the
    draft-decode limit: no step, whatever surrounds the image work, can exceed that share.

Run from the repo root: .venv/bin/python -m bench.bench_fetch [--images 3000] [--repeats 1]
Prints one JSON line per figure, then a summary table.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import csv
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from aiohttp import web
from PIL import Image

from bench.photos import photo_folder
from geosolver_data.ingest.images import decode, encode_jpeg, open_image, process_image
from geosolver_data.ingest.phash import phash
from geosolver_data.spec import ImageSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHORT_SIDE = 336
QUALITY = 90


def user_env(**extra: str) -> dict[str, str]:
    """This environment as a user's shell has it: bytecode cache on (see the module docstring)."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, **extra}


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def serve(port: int, folder: str, n: int) -> None:
    """Every photo from memory (the server's own disk reads stay out of the figures)."""
    bodies = {f"{i:07d}.jpg": (Path(folder) / f"{i:07d}.jpg").read_bytes() for i in range(n)}

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=bodies[request.match_info["name"]], content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/img/{name}", image)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, reuse_port=True)


@contextlib.contextmanager
def image_servers(folder: Path, n: int, processes: int = 0) -> Iterator[str]:
    """The photos served from memory on a loopback port by `processes` processes (default: one per 4
    cores); yields the base URL."""
    port = free_port()
    ctx = multiprocessing.get_context("spawn")
    servers = [ctx.Process(target=serve, args=(port, str(folder), n), daemon=True)
               for _ in range(processes or max(1, (os.cpu_count() or 1) // 4))]
    for server in servers:
        server.start()
    time.sleep(3 + n / 5000)  # each reads every photo into memory first
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for server in servers:
            server.terminate()


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
            writer.writerow([f"{base}/img/{i:07d}.jpg", round(rng.uniform(-60, 70), 6),
                             round(rng.uniform(-179, 179), 6)])


def step_seconds(dagster_home: Path, step: str = "raw_images") -> list[float]:
    """STEP_START to STEP_SUCCESS of the ingest step of each run in this instance, oldest first, from
    the runs' event logs (a run's other step is the asset check)."""
    from dagster import DagsterEventType, DagsterInstance

    os.environ["DAGSTER_HOME"] = str(dagster_home)
    seconds = []
    with DagsterInstance.get() as instance:
        for run in reversed(instance.get_runs()):
            stamps = {}
            for entry in instance.all_logs(run.run_id):
                if entry.dagster_event and entry.step_key == step and entry.dagster_event.event_type in (
                        DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS):
                    stamps[entry.dagster_event.event_type] = entry.timestamp
            seconds.append(stamps[DagsterEventType.STEP_SUCCESS] - stamps[DagsterEventType.STEP_START])
    return seconds


def run_geosolver(listing: Path, root: Path, cores: int, sub_partitions: int = 1) -> dict:
    """One `dagster asset materialize` per ingest partition key (one, unless `sub_partitions`), in turn."""
    root.mkdir(parents=True)
    spec = root / "bench.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "bench", "regions": [{"name": "world", "bbox": [-180, -90, 180, 90]}],
        "sources": [{"type": "urls", "path": str(listing), "requests_per_second": 0, "concurrency": 64,
                     "allow_private_addresses": True}],
        "image": {"min_side": SHORT_SIDE, "jpeg_quality": QUALITY}, "workers": cores,
        "sub_partitions": sub_partitions,
    }))
    dagster_home = root / "dagster"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = user_env(DAGSTER_HOME=str(dagster_home), GEOSOLVER_HOME=str(root / "home"), GEOSOLVER_SPEC=str(spec))
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=env, check=True, capture_output=True)
    units = load_spec(spec).ingest_units()
    walls = []
    for unit in units:
        start = time.perf_counter()
        run = subprocess.run([str(BIN / "dagster"), "asset", "materialize", "-m", "pipelines.definitions",
                              "--select", "raw_images", "--partition", unit.name], env=env, cwd=ROOT,
                             capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        if run.returncode:
            raise SystemExit(f"geosolver failed:\n{run.stderr[-3000:]}")
    work = root / "home" / "work" / "bench"
    raw = [work / "raw_images" / u.folder / "urls.parquet" for u in units]
    rows = {tuple(r.values()) for f in raw for r in pq.read_table(f, columns=["image_id", "sha256"]).to_pylist()}
    on_disk = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
    steps = step_seconds(dagster_home)
    return {"wall_s": sum(walls), "run_walls_s": walls, "step_s": sum(steps), "steps_s": steps,
            "stored": len(rows), "rows": rows, "work_bytes_per_image": on_disk / max(1, len(rows))}


def run_img2dataset(exe: str, listing: Path, out: Path, cores: int, n: int) -> dict:
    per_shard = max(1, -(-n // (2 * cores)))
    cmd = [exe, "--url_list", str(listing), "--input_format", "csv", "--url_col", "url",
           "--save_additional_columns", '["lat","lon"]', "--output_format", "parquet", "--output_folder", str(out),
           "--image_size", str(SHORT_SIDE), "--resize_mode", "keep_ratio", "--encode_quality", str(QUALITY),
           "--processes_count", str(cores), "--thread_count", "64", "--number_sample_per_shard", str(per_shard),
           "--enable_wandb", "False"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=user_env())
    wall = time.perf_counter() - start
    stored = sum(json.loads(p.read_text()).get("successes", 0) for p in out.glob("*_stats.json"))
    return {"wall_s": wall, "stored": stored, "shards": len(list(out.glob("*.parquet")))}


def decode_rates(folder: Path, n: int = 200) -> tuple[dict[str, float], dict[str, float]]:
    """Per second on one core: Pillow's full decodes, its draft decodes (DCT-scaled), and the whole
    image work of an ingest step (`process_image`: draft decode, resize to the spec's size, JPEG,
    sha256, pHash), with no HTTP, process or ledger around it. Also that work's stages, in ms per
    image: where the time goes, and so how near the draft-decode limit any step can come."""
    bodies = [(folder / f"{i:07d}.jpg").read_bytes() for i in range(n)]
    spec = ImageSpec(min_side=SHORT_SIDE, jpeg_quality=QUALITY)
    start = time.perf_counter()
    for body in bodies:
        Image.open(io.BytesIO(body)).load()
    full = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for body in bodies:
        im = Image.open(io.BytesIO(body))
        im.draft("RGB", (im.width * SHORT_SIDE // im.height, SHORT_SIDE))
        im.load()
    draft = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for body in bodies:
        process_image(body, spec)
    image_work = n / (time.perf_counter() - start)
    stages = dict.fromkeys(("decode_and_resize", "jpeg_encode", "sha256", "phash"), 0.0)
    for body in bodies:
        clock = [time.perf_counter()]
        rgb = decode(open_image(body, spec), spec)
        clock.append(time.perf_counter())
        jpeg = encode_jpeg(rgb, QUALITY)
        clock.append(time.perf_counter())
        hashlib.sha256(jpeg).hexdigest()
        clock.append(time.perf_counter())
        phash(rgb)
        clock.append(time.perf_counter())
        for stage, (a, b) in zip(stages, itertools.pairwise(clock), strict=True):
            stages[stage] += b - a
    ms = {stage: 1000 * seconds / n for stage, seconds in stages.items()}
    draft_ms = 1000 / draft  # the decode, timed alone above; the rest of `decode` is the resize
    ms = {"draft_decode": draft_ms, "resize": ms.pop("decode_and_resize") - draft_ms, **ms}
    return {"full": full, "draft": draft, "image_work": image_work}, ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=1, help="run both tools this many times, alternating")
    parser.add_argument("--img2dataset", default=shutil.which("img2dataset") or "/tmp/i2d/bin/img2dataset")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "geosolver-bench",
                        help="where the generated photos are kept between runs")
    parser.add_argument("--server-processes", type=int, default=0,
                        help="image server processes sharing the port (default: one per 4 cores)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    compileall.compile_dir(ROOT / "geosolver_data", quiet=1)
    compileall.compile_dir(ROOT / "pipelines", quiet=1)
    folder = photo_folder(args.images, args.cache)
    with image_servers(folder, args.images, args.server_processes) as base:
        rows = compare(args, folder, base, cores)
    for ours, theirs in rows:
        print(f"| {args.images:,} | {theirs['images_per_s']:.0f} | {ours['images_per_s']:.0f} "
              f"(**{ours['images_per_s'] / theirs['images_per_s']:.2f}×**) | {ours['step_images_per_s']:.0f} "
              f"({ours['step_images_per_s'] / ours['draft_limit']:.2f} of the draft-decode limit, "
              f"{ours['step_images_per_s'] / ours['image_work_limit']:.2f} of the image-work limit) |")


def compare(args: argparse.Namespace, folder: Path, base: str, cores: int) -> list[tuple[dict, dict]]:
    """Both tools, `args.repeats` times, alternating; the decode limits first."""
    rates, stage_ms = decode_rates(folder)
    limits = {k: v * cores for k, v in rates.items()}
    emit(bench="decode_limits", cores=cores, full_per_s=round(limits["full"], 1), draft_per_s=round(limits["draft"], 1),
         image_work_per_s=round(limits["image_work"], 1),
         image_work_share_of_draft_limit=round(limits["image_work"] / limits["draft"], 2),
         image_work_ms={k: round(v, 2) for k, v in stage_ms.items()},
         mean_jpeg_kb=round(sum(p.stat().st_size for p in list(folder.glob("*.jpg"))[:200]) / 200 / 1000, 1))
    have_peer = Path(args.img2dataset).exists()
    rows = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            listing = Path(tmp) / "urls.csv"
            write_list(listing, base, args.images)
            ours = run_geosolver(listing, Path(tmp) / "geosolver", cores)
            ours |= {"images_per_s": ours["stored"] / ours["wall_s"], "step_images_per_s":
                     ours["stored"] / ours["step_s"], "draft_limit": limits["draft"],
                     "image_work_limit": limits["image_work"]}
            emit(bench="ingest_e2e_geosolver", repeat=repeat, images=ours["stored"],
                 wall_s=round(ours["wall_s"], 1), step_s=round(ours["step_s"], 1),
                 images_per_s=round(ours["images_per_s"], 1),
                 step_images_per_s=round(ours["step_images_per_s"], 1),
                 step_per_core=round(ours["step_images_per_s"] / cores, 1),
                 step_share_of_draft_limit=round(ours["step_images_per_s"] / limits["draft"], 2),
                 step_share_of_full_limit=round(ours["step_images_per_s"] / limits["full"], 2),
                 step_share_of_image_work_limit=round(ours["step_images_per_s"] / limits["image_work"], 2),
                 work_kb_per_stored_image=round(ours["work_bytes_per_image"] / 1000, 1))
            if not have_peer:
                emit(bench="ingest_e2e_img2dataset", skipped=f"{args.img2dataset} not found (see the docstring)")
                continue
            theirs = run_img2dataset(args.img2dataset, listing, Path(tmp) / "i2d", cores, args.images)
            theirs["images_per_s"] = theirs["stored"] / theirs["wall_s"]
            emit(bench="ingest_e2e_img2dataset", repeat=repeat, images=theirs["stored"], shards=theirs["shards"],
                 wall_s=round(theirs["wall_s"], 1), images_per_s=round(theirs["images_per_s"], 1),
                 share_of_draft_limit=round(theirs["images_per_s"] / limits["draft"], 2))
            rows.append((ours, theirs))
            emit(bench="ratio", repeat=repeat, end_to_end=round(ours["images_per_s"] / theirs["images_per_s"], 2),
                 geosolver_step_vs_img2dataset_wall=round(ours["step_images_per_s"] / theirs["images_per_s"], 2))
    return rows


if __name__ == "__main__":
    main()
