"""One region of OSV-5M from the Hub: range reads against downloading the archives whole (issue #25).

An OSV-5M-shaped dataset repo (`train.csv`, `images/train/NN.zip`: each archive a random share of every
region's photos, as OSV-5M's are) is served by the loopback Hub of the tests (tests/fakes/hub.py): the
Hub on 127.0.0.1 answers `resolve` for the archives with a 302 to its file host on 127.0.0.2, which
serves the bytes with Range, each answer paced like a link of `--link-mbps` per connection. One region of
`--regions` is ingested, each way end to end as its user runs it, in the same run:

  * Geosolver: `dagster asset materialize --select raw_images --partition r0` with `hub: osv5m/osv5m`
    and the osv5m-streetclip recipe's `requests_per_second: 200`, `concurrency: 32` (fresh home, Dagster
    instance and Hugging Face cache).
  * The way before (what a user did by hand): `hf download osv5m/osv5m --repo-type dataset --include
    "images/train/*" --include train.csv` (huggingface_hub's own CLI, its default parallel downloads), then the same
    `dagster asset materialize` with `path` and `images` pointing at the download.

Printed: the bytes each way downloaded against the region's share of the member bytes (goal: <= 1.2x that
share plus the central directories), and the seconds to the first photo's bytes (for the Hub path: when
the file host served the first member; for the way before, at least the download, as no member is read
before every archive is on disk) and to the end of the run. Left out: `dagster instance migrate`
(done once beforehand, as `make init` does); the Hub's API answers (a few KB) are not counted as bytes.

Run from the repo root: .venv/bin/python -m bench.bench_hub [--archives 20] [--photos 4000] [--regions 4]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.fakes.hub import FakeHub
from tests.fakes.osv5m import osv5m_repo
from tests.fakes.server import LoopbackServer

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent
REPO = "osv5m/osv5m"


def _boxes(regions: int) -> list[tuple[float, float, float, float]]:
    return [(10.0 + i, 50.0, 10.9 + i, 50.9) for i in range(regions)]


def _spec(boxes: list[tuple[float, float, float, float]], source: dict) -> dict:
    return {"name": "hub", "regions": [{"name": f"r{i}", "bbox": list(b)} for i, b in enumerate(boxes)],
            "sources": [{"type": "osv5m", **source}], "image": {"max_file_bytes": 5_000_000}}


def _materialize(work: Path, spec: dict, env: dict[str, str]) -> float:
    (work / "spec.yaml").write_text(yaml.safe_dump(spec))
    dagster = work / "dagster"
    dagster.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster)
    env = {**env, "GEOSOLVER_SPEC": str(work / "spec.yaml"), "GEOSOLVER_HOME": str(work / "home"),
           "DAGSTER_HOME": str(dagster)}
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=env, check=True, capture_output=True)
    start = time.time()
    done = subprocess.run([str(BIN / "dagster"), "asset", "materialize", "-m", "pipelines.definitions",
                           "--select", "raw_images", "--partition", "r0"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    return start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archives", type=int, default=20)
    parser.add_argument("--photos", type=int, default=4000, help="in the whole split")
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--link-mbps", type=float, default=400.0, help="each connection's pace (0: loopback speed)")
    parser.add_argument("--requests-per-second", type=float, default=200.0,
                        help="the source's per-host budget (200: the osv5m-streetclip recipe's; the default is 20)")
    args = parser.parse_args()
    boxes = _boxes(args.regions)
    repo = osv5m_repo([(b, args.photos // args.regions) for b in boxes], archives=args.archives, awkward=False,
                      size=(640, 480))
    archive_bytes = sum(len(v) for k, v in repo.files.items() if k.endswith(".zip"))
    mine = repo.ids_in(boxes[0])
    share = sum(repo.member_bytes[k] for k in mine)
    members = {(path, at) for path, at in repo.member_at.values()}
    hub = FakeHub(cdn_bytes_per_s=args.link_mbps * 1e6 / 8)
    hub.push(REPO, repo.files, kind="dataset")
    path_of = {hashlib.sha256(v).hexdigest(): k for k, v in repo.files.items()}
    results = {}
    with LoopbackServer(hub.app(), hosts=("127.0.0.2",)) as server, tempfile.TemporaryDirectory() as scratch:
        hub.cdn = server.urls[1]
        env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "HF_TOKEN")},
               "HF_ENDPOINT": server.url, "HF_HUB_DISABLE_TELEMETRY": "1"}

        work = Path(scratch) / "hub"
        work.mkdir()
        start = _materialize(work, _spec(boxes, {"hub": REPO, "allow_private_addresses": True,
                                                  "requests_per_second": args.requests_per_second, "concurrency": 32}),
                             {**env, "HF_HOME": str(work / "hf")})
        end = time.time()
        member_log = [e for e in hub.cdn_log if (path_of[e[1]], e[2]) in members]
        results["geosolver_hub"] = {
            "bytes": hub.cdn_bytes, "member_bytes": sum(e[3] for e in member_log),
            "directory_bytes": hub.cdn_bytes - sum(e[3] for e in member_log),
            "first_photo_s": round(min(e[0] for e in member_log) - start, 2), "wall_s": round(end - start, 2)}

        hub.cdn_bytes, hub.cdn_log = 0, []
        work = Path(scratch) / "before"
        work.mkdir()
        start = time.time()
        subprocess.run([str(BIN / "hf"), "download", REPO, "--repo-type", "dataset", "--include", "images/train/*",
                        "--include", "train.csv", "--local-dir", str(work / "osv5m")],
                       env={**env, "HF_HOME": str(work / "hf")}, check=True, capture_output=True)
        downloaded = time.time() - start
        local = {"path": str(work / "osv5m" / "train.csv"), "images": str(work / "osv5m" / "images" / "train")}
        run_start = _materialize(work, _spec(boxes, local), env)
        results["download_then_local"] = {"bytes": hub.cdn_bytes, "download_s": round(downloaded, 2),
                                          "first_photo_s": f">= {downloaded:.2f}",
                                          "wall_s": round(downloaded + time.time() - run_start, 2)}
    ours, before = results["geosolver_hub"], results["download_then_local"]
    summary = {
        "archives": args.archives, "photos": len(repo.points), "region_photos": len(mine),
        "archive_bytes": archive_bytes, "region_member_bytes": share, "link_mbps_per_connection": args.link_mbps,
        "requests_per_second": args.requests_per_second,
        **{f"{way}_{k}": v for way, figures in results.items() for k, v in figures.items()},
        "hub_member_bytes_over_share": round(ours["member_bytes"] / share, 3),
        "hub_bytes_over_share_plus_directories": round(ours["bytes"] / (share + ours["directory_bytes"]), 3),
        "bytes_before_over_hub": round(before["bytes"] / ours["bytes"], 2),
        "wall_before_over_hub": round(before["wall_s"] / ours["wall_s"], 2),
        "first_photo_before_over_hub": round(float(before["download_s"]) / ours["first_photo_s"], 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
