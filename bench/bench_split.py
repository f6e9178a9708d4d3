"""One region ingested whole and split into sub-partitions, side by side in one run (issue #14).

N distinct photo-like 1024x768 JPEGs (bench/photos.py) on a loopback server, one `urls` region:

  * whole: `dagster asset materialize --select raw_images --partition world`, as bench_fetch runs it;
  * split: the same spec with `sub_partitions: P`, one `dagster asset materialize --partition world|k`
    per part, one after another on this machine (on a cluster each would be its own pod).

It checks that both stored the same (image_id, sha256) rows, and prints both walls, each part's wall
and step time, and the split's overhead (its total against the whole run's). "slowest_part_wall_s" is
what P pods in parallel would take if the image host were not the limit: an estimate, not a
measurement. What no figure includes: `dagster instance migrate` (done once beforehand, as `make init`
does), and the downstream build (it reads every part; tests/ check it publishes the same version).

Run from the repo root: .venv/bin/python -m bench.bench_split [--images 20000] [--parts 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench.bench_fetch import emit, image_servers, run_geosolver, write_list
from bench.photos import photo_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "geosolver-bench",
                        help="where the generated photos are kept between runs")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    folder = photo_folder(args.images, args.cache)
    with image_servers(folder, args.images) as base, tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "urls.csv"
        write_list(listing, base, args.images)
        whole = run_geosolver(listing, Path(tmp) / "whole", cores)
        emit(bench="split_whole", images=whole["stored"], wall_s=round(whole["wall_s"], 1),
             step_s=round(whole["step_s"], 1), images_per_s=round(whole["stored"] / whole["wall_s"], 1))
        split = run_geosolver(listing, Path(tmp) / "split", cores, sub_partitions=args.parts)
    same = split["rows"] == whole["rows"]
    emit(bench="split_parts", parts=args.parts, images=split["stored"], same_rows_as_whole=same,
         wall_s=round(split["wall_s"], 1), step_s=round(split["step_s"], 1),
         part_walls_s=[round(w, 1) for w in split["run_walls_s"]], part_steps_s=[round(s, 1) for s in split["steps_s"]],
         slowest_part_wall_s=round(max(split["run_walls_s"]), 1))
    emit(bench="split_ratio", total_wall_split_over_whole=round(split["wall_s"] / whole["wall_s"], 2),
         total_step_split_over_whole=round(split["step_s"] / whole["step_s"], 2),
         whole_over_slowest_part=round(whole["wall_s"] / max(split["run_walls_s"]), 2))
    if not same:
        raise SystemExit("the split ingest stored other rows than the whole one")


if __name__ == "__main__":
    main()
