"""Dataset-builder benchmarks (issue: dataset builder end to end). Prints one JSON line per figure.

Each figure stands beside the peer it is measured against, in the same run:
  * ingest image work (decode, resize to 336, JPEG, sha256, pHash) per core, and pHash alone
    against the `imagehash` package;
  * near-duplicate search on 1M random 64-bit hashes with planted near pairs: time and recall,
    against brute force (measured on a sample and scaled, since 5e11 comparisons do not finish);
  * H3 cells for 1M points at the demo's resolutions, against a plain per-point `h3` loop;
  * balance + split of 1M metadata rows;
  * the whole dedup stage (exact, perceptual, same-place) on 1M metadata rows;
  * scaling: the metadata stages as the assets run them (dedup, geocells, balance, shards + publish,
    with empty image bytes) at 100k and 1M rows, time per row for each, so a superlinear stage shows.

Run from the repo root: .venv/bin/python -m bench.bench_data [--points 1000000] [--scaling 100000,1000000]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
from pathlib import Path

import duckdb
import h3
import imagehash
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from bench.photos import photo
from geosolver_data import stages
from geosolver_data.balance import balance
from geosolver_data.dedup import deduplicate
from geosolver_data.geo import h3_cells
from geosolver_data.hamming import near_pairs
from geosolver_data.ingest.images import process_image
from geosolver_data.ingest.phash import phash
from geosolver_data.schemas import RAW_SCHEMA, REJECT_SCHEMA
from geosolver_data.spec import BalanceSpec, DedupSpec, ImageSpec, parse_spec
from geosolver_data.store.home import DatasetLayout


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def timed(fn, *args, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, out


def bench_image_work(n: int = 200) -> None:
    files = [photo(i, (1024, 768)) for i in range(n)]  # distinct photo-like JPEGs (bench/photos.py)
    spec = ImageSpec(max_side=336)
    t, _ = timed(lambda: [process_image(f, spec) for f in files])
    images = [Image.open(io.BytesIO(photo(n + i, (336, 252)))).convert("RGB") for i in range(n)]
    t_ours, ours = timed(lambda: [phash(im) for im in images], repeat=3)
    t_ref, ref = timed(lambda: [int(str(imagehash.phash(im)), 16) for im in images], repeat=3)
    emit(bench="ingest_image_work_per_core", source="1024x768 JPEG", images_per_s=round(n / t, 1))
    emit(bench="phash", ours_images_per_s=round(n / t_ours), imagehash_images_per_s=round(n / t_ref),
         ratio=round(t_ref / t_ours, 2), identical=ours == ref)


def _planted_hashes(n: int, pairs: int, k: int, seed: int = 0) -> tuple[np.ndarray, set[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, n, dtype=np.uint64)
    idx = rng.choice(n, 2 * pairs, replace=False)
    planted = set()
    for a, b in zip(idx[:pairs], idx[pairs:], strict=True):
        v = int(h[a])
        for bit in rng.choice(64, int(rng.integers(0, k + 1)), replace=False):
            v ^= 1 << int(bit)
        h[b] = v
        planted.add((min(a, b), max(a, b)))
    return h, planted


def bench_near_duplicates(n: int, k: int = 4, pairs: int = 10_000) -> None:
    h, planted = _planted_hashes(n, pairs, k)
    con = duckdb.connect()
    con.register("src", pa.table({"id": np.arange(n), "h": h}))
    con.execute("CREATE TABLE t AS SELECT * FROM src")
    t, found = timed(near_pairs, con, "t", k)
    got = {(int(a), int(b)) for a, b, _ in found}
    sample = h[:20_000]
    start = time.perf_counter()
    for i in range(len(sample)):  # brute force, vectorised per row: popcount of xor against the rest
        x = np.bitwise_xor(sample[i + 1:], sample[i])
        np.bitwise_count(x) <= k  # noqa: B015 (timed, result unused)
    brute_sample = time.perf_counter() - start
    brute_full = brute_sample * (n / len(sample)) ** 2
    emit(bench="near_duplicate_search", hashes=n, threshold=k, planted_pairs=pairs, seconds=round(t, 2),
         recall=round(len(planted & got) / len(planted), 4), pairs_found=len(got),
         brute_force_seconds_estimated=round(brute_full), speedup_vs_brute_force=round(brute_full / t))


def metadata_rows(n: int) -> pa.Table:
    """n raw_images rows: 1% exact and ~1% near duplicates, sequences of ~20 images, no image bytes."""
    rng = np.random.default_rng(3)
    h, _ = _planted_hashes(n, n // 100, 4, seed=3)
    sha = [f"{i:064x}" for i in range(n)]
    for i in rng.choice(n, n // 100, replace=False):  # 1% exact copies
        sha[i] = sha[(i + 1) % n]
    seq = rng.integers(0, n // 20, n)
    table = pa.table({
        "image_id": [f"mapillary:{i}" for i in range(n)], "source": ["mapillary"] * n,
        "lat": rng.uniform(-60, 70, n), "lon": rng.uniform(-180, 180, n),
        "captured_at": pa.array(np.zeros(n, dtype="datetime64[ms]")).cast(pa.timestamp("ms", tz="UTC")),
        "sequence_id": [f"s{v}" for v in seq], "license": [None] * n, "creator": [None] * n,
        "width": np.full(n, 336, dtype=np.int32), "height": np.full(n, 252, dtype=np.int32), "sha256": sha,
        "phash": h, "image": [b""] * n,
    }, schema=RAW_SCHEMA)
    return table


def bench_dedup_stage(n: int, tmp: Path) -> None:
    """The whole deduplicated_images stage (exact + perceptual + same-place) on n metadata rows."""
    pq.write_table(metadata_rows(n), tmp / "raw.parquet")
    t, stats = timed(deduplicate, [tmp / "raw.parquet"], DedupSpec(), tmp / "kept.parquet", tmp / "dropped.parquet")
    emit(bench="dedup_stage", rows=n, seconds=round(t, 2), rows_per_s=round(n / t), dropped=stats.dropped)


def bench_h3(n: int, resolutions: tuple[int, ...] = (1, 3, 5)) -> None:
    rng = np.random.default_rng(1)
    lat, lon = rng.uniform(-80, 80, n), rng.uniform(-180, 180, n)
    lat_l, lon_l = lat.tolist(), lon.tolist()
    t_ours, cells = timed(h3_cells, lat, lon, resolutions, repeat=3)

    def loop_str() -> list:
        return [[h3.str_to_int(h3.latlng_to_cell(a, b, r)) for a, b in zip(lat_l, lon_l, strict=True)]
                for r in resolutions]

    def loop_int() -> list:
        import h3.api.basic_int as h3i

        return [[h3i.latlng_to_cell(a, b, r) for a, b in zip(lat_l, lon_l, strict=True)] for r in resolutions]

    t_str, _ = timed(loop_str)
    t_int, ref = timed(loop_int)
    agree = float(np.mean(cells[max(resolutions)] == np.array(ref[-1], dtype=np.uint64)))
    t_one, _ = timed(h3_cells, lat, lon, (5,), repeat=3)
    emit(bench="h3_assignment", points=n, resolutions=list(resolutions), ours_s=round(t_ours, 3),
         loop_str_api_s=round(t_str, 2), loop_int_api_s=round(t_int, 2),
         ratio_vs_str_loop=round(t_str / t_ours, 1), ratio_vs_int_loop=round(t_int / t_ours, 1),
         ours_single_resolution_s=round(t_one, 3), finest_resolution_agreement=agree)


def bench_balance(n: int) -> None:
    rng = np.random.default_rng(2)
    centres = rng.uniform([-50, -180], [70, 180], size=(5000, 2))
    pick = rng.zipf(1.3, n).clip(1, 5000) - 1
    lat = np.clip(centres[pick, 0] + rng.normal(0, 0.3, n), -89, 89)
    lon = np.clip(centres[pick, 1] + rng.normal(0, 0.3, n), -180, 180)
    cells = h3_cells(lat, lon, (1, 3))
    table = pa.table({"image_id": [f"mapillary:{i}" for i in range(n)], "lat": lat, "lon": lon,
                      "h3_r1": cells[1], "h3_r3": cells[3]})
    spec = BalanceSpec(resolution=3, alpha=0.5, cap=100, target_size=n // 4, split_resolution=1)
    t, result = timed(balance, table, spec)
    emit(bench="balance_and_split", rows=n, seconds=round(t, 2), selected=result.table.num_rows,
         gini_before=result.report["before"]["gini"], gini_after=result.report["after"]["gini"],
         goal_seconds=10)


def _stage_seconds(n: int) -> dict[str, float]:
    """Seconds of each metadata stage, as its asset calls it, on n rows clustered around 5,000 towns."""
    spec = parse_spec({"name": "scale", "regions": [{"name": "world", "bbox": [-180, -90, 180, 90]}],
                       "sources": [{"type": "urls", "path": "unused.csv"}],
                       "balance": {"target_size": n // 2, "cap": 1000}})
    rng = np.random.default_rng(4)
    centres = rng.uniform([-50, -180], [70, 180], size=(5000, 2))
    pick = rng.zipf(1.3, n).clip(1, 5000) - 1
    table = metadata_rows(n)
    table = table.set_column(2, "lat", pa.array(np.clip(centres[pick, 0] + rng.normal(0, 0.2, n), -89, 89)))
    table = table.set_column(3, "lon", pa.array(np.clip(centres[pick, 1] + rng.normal(0, 0.2, n), -180, 180)))
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        layout = DatasetLayout(Path(tmp), spec.name)
        raw = layout.raw_images("world", "urls")
        raw.parent.mkdir(parents=True)
        pq.write_table(table, raw)
        rejects = layout.raw_rejects("world", "urls")
        rejects.parent.mkdir(parents=True)
        pq.write_table(REJECT_SCHEMA.empty_table(), rejects)
        for name, step in (("dedup", stages.deduplicate_dataset), ("geocells", stages.assign_cells),
                           ("balance", stages.balance_dataset), ("shards_and_publish", stages.publish)):
            seconds[name], _ = timed(step, spec, layout)
    return seconds


def bench_scaling(sizes: list[int]) -> None:
    """Microseconds per row of each stage at each size: a linear stage keeps its figure as the size
    grows tenfold; `per_row_growth` is the last size's figure over the first's."""
    per_row: dict[str, list[float]] = {}
    for n in sizes:
        for name, t in _stage_seconds(n).items():
            per_row.setdefault(name, []).append(t / n * 1e6)
            emit(bench="stage_scaling", stage=name, rows=n, seconds=round(t, 2), us_per_row=round(t / n * 1e6, 2))
    if len(sizes) > 1:
        for name, us in per_row.items():
            emit(bench="stage_scaling_ratio", stage=name, rows=sizes, us_per_row=[round(u, 2) for u in us],
                 per_row_growth=round(us[-1] / us[0], 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000, help="hashes, points and rows per benchmark")
    parser.add_argument("--scaling", default="100000,1000000", help="row counts for the stage-scaling figures")
    parser.add_argument("--only-scaling", action="store_true", help="print only the stage-scaling figures")
    args = parser.parse_args()
    if args.only_scaling:
        bench_scaling([int(v) for v in args.scaling.split(",")])
        return
    emit(bench="machine", cpus=__import__("os").cpu_count(), python=platform.python_version(),
         processor=platform.machine())
    bench_image_work()
    bench_h3(args.points)
    bench_balance(args.points)
    bench_near_duplicates(args.points)
    with tempfile.TemporaryDirectory() as tmp:
        bench_dedup_stage(args.points, Path(tmp))
    bench_scaling([int(v) for v in args.scaling.split(",")])


if __name__ == "__main__":
    main()
