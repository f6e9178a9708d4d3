"""Can the gallery hold the answer? The demo dataset built with whole-region split blocks (H3 res 1, the
old design) and with the demo's fine blocks, and for each test photo: how far the nearest training photo
is, and the nearest point of each gallery (the training locations, one per res-5 cell; the populated-cell
grid). Distances only: no model is trained, so it runs in about a minute.

    python -m bench.bench_gallery [--home DIR]

Prints JSON lines, one per (split design, what is measured): the median distance in km and the share of
test photos within 1 km and 25 km (acc@1km and acc@25km can be no higher than these), and the share of test
photos in a country that has no training photo.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

from geosolver_data import stages as data_stages
from geosolver_data.geo import haversine_km
from geosolver_data.model_spec import parse_spec
from geosolver_data.spec import default_spec_path
from geosolver_data.store.home import DatasetLayout
from geosolver_model.retrieval.gallery import build_gallery, grid_gallery


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def nearest_km(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N, 2) x (M, 2) degrees -> (N,) km to the nearest target, in chunks."""
    out = [haversine_km(points[i:i + 64, None, 0], points[i:i + 64, None, 1], targets[None, :, 0],
                        targets[None, :, 1]).min(axis=1) for i in range(0, len(points), 64)]
    return np.concatenate(out)


def summary(km: np.ndarray) -> dict:
    return {"median_km": round(float(np.median(km)), 1), "within_1km": round(float(np.mean(km <= 1)), 3),
            "within_25km": round(float(np.mean(km <= 25)), 3)}


def measure(version_dir: Path, split_resolution: int, gallery_resolution: int) -> None:
    table = pq.read_table(version_dir / "shards", columns=["lat", "lon", "country", "split"])
    split = np.asarray(table.column("split").to_pylist())
    latlon = np.stack([table.column("lat").to_numpy(), table.column("lon").to_numpy()], axis=1)
    country = np.asarray(table.column("country").to_pylist())
    test, train = latlon[split == "test"], latlon[split == "train"]
    base = {"split_resolution": split_resolution, "test_photos": len(test)}
    emit(**base, measured="nearest_training_photo", **summary(nearest_km(test, train)),
         test_share_in_countries_without_training=round(float(np.mean(
             ~np.isin(country[split == "test"], country[split == "train"]))), 3))
    emit(**base, measured=f"gallery_train_r{gallery_resolution}",
         **summary(nearest_km(test, build_gallery(version_dir, gallery_resolution).astype(np.float64))))
    emit(**base, measured=f"gallery_grid_r{gallery_resolution}",
         **summary(nearest_km(test, grid_gallery(gallery_resolution).astype(np.float64))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="where to build the demo dataset (default: a scratch folder)")
    args = parser.parse_args()
    raw = yaml.safe_load(default_spec_path().read_text())
    with tempfile.TemporaryDirectory() as scratch:
        home = args.home or Path(scratch)
        for split_resolution in (1, raw["balance"]["split_resolution"]):
            spec = parse_spec({**raw, "balance": {**raw["balance"], "split_resolution": split_resolution}})
            layout = DatasetLayout(home, spec.name)
            if split_resolution == 1:
                published = data_stages.build_dataset(spec, layout, log=lambda _: None)
            else:  # the same ingest, balanced and published again with the other split blocks
                data_stages.balance_dataset(spec, layout)
                published = data_stages.publish(spec, layout)
            emit(split_resolution=split_resolution, dataset_version=published.version,
                 splits=published.info.balance.splits)
            measure(published.path, split_resolution, spec.model.gallery_resolution)


if __name__ == "__main__":
    main()
