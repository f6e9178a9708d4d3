"""Stream a dataset version's shards as batches: Parquet row groups split across ranks and workers.

The order is a pure function of (seed, epoch), so a run resumed at batch N sees exactly the batches
an uninterrupted run would have seen from N on; skipped batches are counted from Parquet metadata
without reading any image.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from geosolver_data.spec import ImageSpec
from geosolver_model.images import Processing, augment, decode, to_pixels


@dataclass(frozen=True)
class Unit:
    """One Parquet row group: the unit of work handed to a rank/worker."""

    path: Path
    row_group: int
    rows: int


def dataset_image_spec(version_dir: Path) -> ImageSpec:
    """How the dataset version stored its images (so raw photos can be brought to the same size)."""
    manifest = json.loads((version_dir / "manifest.json").read_text())
    return ImageSpec.model_validate(manifest.get("spec", {}).get("image", {}), strict=False)


def row_groups(version_dir: Path, split: str) -> list[Unit]:
    manifest = json.loads((version_dir / "manifest.json").read_text())
    units = []
    for shard in manifest["shards"]:
        if shard["split"] != split:
            continue
        meta = pq.ParquetFile(version_dir / shard["path"]).metadata
        units += [Unit(version_dir / shard["path"], i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
    if not units:
        raise ValueError(f"{version_dir}: no rows in split {split!r}")
    return units


class ShardStream(IterableDataset):
    """Infinite stream of training batches {pixels (B,3,S,S), latlon (B,2)} for one rank."""

    def __init__(self, version_dir: Path, processing: Processing, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, start_batch: int = 0, split: str = "train", train: bool = True) -> None:
        self.units = row_groups(version_dir, split)
        self.processing, self.batch_size, self.seed = processing, batch_size, seed
        self.rank, self.world_size, self.start_batch, self.train = rank, world_size, start_batch, train

    def units_of(self, slot: int, slots: int, epoch: int) -> list[int]:
        """The row groups one rank x worker slot reads in an epoch: every slot gets a disjoint share."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.units))
        mine = [int(i) for i in order[slot::slots]]
        if not mine:
            raise ValueError(f"{len(self.units)} row groups cannot feed {slots} rank x worker slots; "
                             "lower shards.row_group_rows or use fewer workers")
        return mine

    def epoch_rows(self, epoch: int = 0) -> int:
        """Rows this rank (one data-loader worker) reads in an epoch."""
        return sum(self.units[u].rows for u in self.units_of(self.rank, self.world_size, epoch))

    def _samples(self, slot: int, slots: int, skip: int) -> Iterator[tuple[torch.Tensor, tuple[float, float]]]:
        epoch = 0
        while True:
            for u in self.units_of(slot, slots, epoch):
                unit = self.units[u]
                if skip >= unit.rows:
                    skip -= unit.rows
                    continue
                table = pq.ParquetFile(unit.path).read_row_group(unit.row_group, columns=["image", "lat", "lon"])
                rows = np.random.default_rng([self.seed, epoch, u]).permutation(unit.rows)
                images, lat, lon = table.column("image"), table.column("lat"), table.column("lon")
                for j in rows[skip:]:
                    image = decode(images[int(j)].as_py())
                    if self.train:
                        rng = np.random.default_rng([self.seed, epoch, u, int(j)])
                        pixels = augment(image, self.processing, rng)
                    else:
                        pixels = to_pixels(image, self.processing)
                    yield pixels, (lat[int(j)].as_py(), lon[int(j)].as_py())
                skip = 0
            epoch += 1

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        # batches of this worker already consumed: DataLoader takes them round-robin across workers
        done = len(range(worker, self.start_batch, workers))
        samples = self._samples(self.rank * workers + worker, self.world_size * workers, done * self.batch_size)
        while True:
            batch = [next(samples) for _ in range(self.batch_size)]
            yield {"pixels": torch.stack([b[0] for b in batch]),
                   "latlon": torch.tensor([b[1] for b in batch], dtype=torch.float32)}


def loader(stream: ShardStream, num_workers: int) -> DataLoader:
    return DataLoader(stream, batch_size=None, num_workers=num_workers, persistent_workers=False)
