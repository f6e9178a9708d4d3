"""Stream a dataset version's shards as batches: Parquet row groups split across ranks and workers.

The order is a pure function of (seed, epoch), so a run resumed at batch N sees exactly the batches
an uninterrupted run would have seen from N on; skipped batches are counted from Parquet metadata
without reading any image.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from geosolver_data.spec import ImageSpec
from geosolver_data.store.manifests import read_dataset_manifest
from geosolver_model.net.images import Processing, augment, decode, to_pixels


@dataclass(frozen=True)
class Unit:
    """One Parquet row group: the unit of work handed to a rank/worker."""

    path: Path
    row_group: int
    rows: int


def dataset_image_spec(version_dir: Path) -> ImageSpec:
    """How the dataset version stored its images (so raw photos can be brought to the same size)."""
    return ImageSpec.model_validate(read_dataset_manifest(version_dir).spec.get("image", {}), strict=False)


def row_groups(version_dir: Path, split: str) -> list[Unit]:
    units = []
    for path in read_dataset_manifest(version_dir).shard_paths(version_dir, split):
        meta = pq.ParquetFile(path).metadata
        units += [Unit(path, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
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

    def _shares(self, slots: int, epoch: int) -> tuple[list[list[int]], int]:
        """Every slot's row groups in an epoch, dealt in a (seed, epoch) order to the slot with the fewest rows
        so far (shares differ by at most one row group), and the rows of the largest share."""
        if len(self.units) < slots:
            raise ValueError(f"{len(self.units)} row groups cannot feed {slots} rank x worker slots; "
                             "lower shards.row_group_rows or use fewer workers")
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.units))
        shares: list[list[int]] = [[] for _ in range(slots)]
        rows = np.zeros(slots, dtype=np.int64)
        for u in order.tolist():
            least = int(np.argmin(rows))  # ties go to the lowest slot
            shares[least].append(u)
            rows[least] += self.units[u].rows
        return shares, int(rows.max())

    def units_of(self, slot: int, slots: int, epoch: int) -> list[int]:
        """The row groups one rank x worker slot reads in an epoch: a disjoint share for every slot."""
        return self._shares(slots, epoch)[0][slot]

    def epoch_length(self, slots: int, epoch: int = 0) -> int:
        """Samples every slot yields in an epoch: the largest share's rows. A shorter share repeats its first
        rows (as DistributedSampler pads), so ranks and workers change epoch at the same step, every row is
        read each epoch, and no rank waits on another's last batch."""
        return self._shares(slots, epoch)[1]

    def epoch_rows(self, epoch: int = 0) -> int:
        """Samples this rank (one data-loader worker) reads in an epoch."""
        return self.epoch_length(self.world_size, epoch)

    def _epoch(self, slot: int, slots: int, epoch: int, skip: int = 0) -> Iterator[tuple[int, int]]:
        """(unit, row) pairs of one slot's epoch from position `skip` on, up to epoch_length (lazily: no list
        of the rows; row groups wholly before `skip` are passed over by their row counts, never permuted)."""
        shares, length = self._shares(slots, epoch)
        n = 0
        while True:  # a second pass over the share only to pad a short one
            for u in shares[slot]:
                rows = self.units[u].rows
                if n + rows <= skip:
                    n += rows
                    continue
                for j in np.random.default_rng([self.seed, epoch, u]).permutation(rows).tolist():
                    if n == length:
                        return
                    if n >= skip:
                        yield u, j
                    n += 1

    def _samples(self, slot: int, slots: int, skip: int) -> Iterator[tuple[torch.Tensor, tuple[float, float]]]:
        epoch = 0
        while skip >= (length := self.epoch_length(slots, epoch)):  # whole epochs already consumed
            skip, epoch = skip - length, epoch + 1
        table, loaded = None, -1
        while True:
            for u, j in self._epoch(slot, slots, epoch, skip):
                if u != loaded:  # a slot's pairs come unit by unit: each row group is read once per pass
                    unit = self.units[u]
                    table = pq.ParquetFile(unit.path).read_row_group(unit.row_group, columns=["image", "lat", "lon"])
                    loaded = u
                image = decode(table.column("image")[j].as_py())
                if self.train:
                    pixels = augment(image, self.processing, np.random.default_rng([self.seed, epoch, u, j]))
                else:
                    pixels = to_pixels(image, self.processing)
                yield pixels, (table.column("lat")[j].as_py(), table.column("lon")[j].as_py())
            skip, epoch = 0, epoch + 1

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        # DataLoader takes batches round-robin from worker 0 on; batch n of the run is logical worker
        # n % workers's. Resumed at start_batch, physical worker w plays logical worker (w + start) % workers,
        # so the first batch the loader hands out is batch start_batch, whatever the worker count.
        logical = (worker + self.start_batch) % workers
        done = len(range(logical, self.start_batch, workers))  # this logical worker's batches already consumed
        samples = self._samples(self.rank * workers + logical, self.world_size * workers, done * self.batch_size)
        while True:
            batch = [next(samples) for _ in range(self.batch_size)]
            yield {"pixels": torch.stack([b[0] for b in batch]),
                   "latlon": torch.tensor([b[1] for b in batch], dtype=torch.float32)}


def loader(stream: ShardStream, num_workers: int) -> DataLoader:
    return DataLoader(stream, batch_size=None, num_workers=num_workers, persistent_workers=False)
