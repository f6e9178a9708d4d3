"""Write the balanced rows and their image bytes into Parquet shards, one immutable version.

Rows are ordered by split, then by a keyed hash of the image id (a deterministic shuffle), and
cut into shards of about the spec's target size. The version is a hash of the content (row
metadata, image hashes and shard boundaries), so the same input gives the same version whatever
the library versions that wrote the bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from geosolver_data.balance import SPLIT_ORDER, keyed_hash
from geosolver_data.db import connect
from geosolver_data.geocells import h3_column
from geosolver_data.spec import DatasetSpec
from geosolver_data.store.atomic import file_sha256

_TAIL_COLUMNS = ["split", "image", "width", "height", "sha256", "phash", "captured_at", "sequence_id",
                 "license", "creator"]


# What each shard column holds, for the dataset card (and anyone reading a shard).
COLUMN_DOCS = {
    "image_id": "source-qualified id, unique in the dataset (`mapillary:123`, `osv5m:456`)",
    "source": "the spec's source label the photo came from",
    "lat": "latitude of the photo, degrees (WGS84)",
    "lon": "longitude of the photo, degrees (WGS84)",
    "h3_r<N>": "the H3 cell of the photo at resolution N (uint64), one column per `h3_resolutions` entry",
    "country": "ISO 3166 alpha-2 code of the nearest populated place (GeoNames)",
    "split": "`train`, `validation` or `test` (the Hub's names): spatially disjoint blocks",
    "image": "the photo, JPEG, upright, short side at `image.min_side`",
    "width": "stored width, pixels",
    "height": "stored height, pixels",
    "sha256": "of the stored JPEG",
    "phash": "64-bit perceptual hash (uint64), for near-duplicate search",
    "captured_at": "capture time where the source or EXIF gives it (UTC)",
    "sequence_id": "the capture sequence (a drive, a folder), for same-place dedup",
    "license": "the photo's licence, as its source states it",
    "creator": "who took or uploaded it, as its source names them: credit them",
}


def shard_columns(resolutions: Sequence[int]) -> list[str]:
    """Shard column order: identity and place first, then the bytes and provenance."""
    return ["image_id", "source", "lat", "lon", *[h3_column(r) for r in resolutions], "country", *_TAIL_COLUMNS]


@dataclass
class ShardInfo:
    path: str  # relative to the version folder
    split: str
    rows: int
    bytes: int = 0
    sha256: str = ""


@dataclass(frozen=True)
class ShardSet:
    shards: list[ShardInfo]
    content_hash: str


def _hash_batch(digest: hashlib._Hash, batch: pa.RecordBatch) -> None:
    """Feed a canonical encoding of every column but the bytes (their sha256 stands for them)."""
    for name in batch.schema.names:
        if name == "image":
            continue
        col = batch.column(name)
        digest.update(name.encode())
        if pa.types.is_string(col.type):
            digest.update("\x1f".join("\x00" if v is None else v for v in col.to_pylist()).encode())
        else:
            values = col.cast(pa.int64()) if pa.types.is_timestamp(col.type) else col
            digest.update(np.ascontiguousarray(values.fill_null(0).to_numpy(zero_copy_only=False)).tobytes())
            digest.update(np.asarray(col.is_null()).tobytes())


def _ordered_batches(balanced: pa.Table, raw_files: Sequence[Path], spec: DatasetSpec,
                     batch_rows: int) -> Iterator[pa.RecordBatch]:
    shuffle = keyed_hash(balanced.column("image_id").to_pylist(), spec.balance.seed, "shuffle")
    split_rank = pa.array([SPLIT_ORDER.index(s) for s in balanced.column("split").to_pylist()], pa.int8())
    bal = balanced.append_column("_shuffle", pa.array(shuffle, pa.uint64())).append_column("_split", split_rank)
    con = connect()
    con.register("bal", bal)
    cols = ", ".join(f"b.{c}" if c != "image" else "r.image" for c in shard_columns(spec.h3_resolutions))
    reader = con.sql(f"""
        SELECT {cols} FROM bal b
        JOIN (SELECT image_id, image FROM read_parquet(?)) r ON r.image_id = b.image_id
        ORDER BY b._split, b._shuffle
    """, params=[[str(p) for p in raw_files]]).to_arrow_reader(batch_rows)
    yield from reader


def _row_groups(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[tuple[str, pa.Table]]:
    """Re-cut an ordered stream into row groups of exactly `size` rows (the last of each split may
    be shorter), so shard boundaries and the content hash do not depend on how the engine batched."""
    pending: list[pa.Table] = []
    pending_split, pending_rows = "", 0

    def take(rows: int) -> pa.Table:
        nonlocal pending, pending_rows
        joined = pa.concat_tables(pending)
        pending = [joined.slice(rows)] if joined.num_rows > rows else []
        pending_rows = joined.num_rows - rows
        return joined.slice(0, rows)

    for batch in batches:
        table = pa.Table.from_batches([batch])
        for split in SPLIT_ORDER:  # a batch may straddle a split boundary
            part = table.filter(pc.equal(table.column("split"), split))
            if not part.num_rows:
                continue
            if split != pending_split and pending_rows:
                yield pending_split, take(pending_rows)
            pending_split = split
            pending.append(part)
            pending_rows += part.num_rows
            while pending_rows >= size:
                yield split, take(size)
    if pending_rows:
        yield pending_split, take(pending_rows)


class _ShardWriter:
    """Writes row groups into shard files of about `target_bytes` each, one split per file."""

    def __init__(self, folder: Path, schema: pa.Schema, spec: DatasetSpec) -> None:
        self.folder, self.schema, self.spec = folder, schema, spec
        self.target_bytes = int(spec.shards.target_mb * 1024 * 1024)
        self.shards: list[ShardInfo] = []
        self.writer: pq.ParquetWriter | None = None
        self.current: ShardInfo | None = None
        self.current_bytes = 0

    def _open(self, split: str) -> None:
        index = sum(1 for s in self.shards if s.split == split)
        self.current = ShardInfo(path=f"shards/{split}-{index:05d}.parquet", split=split, rows=0)
        self.shards.append(self.current)
        self.writer = pq.ParquetWriter(self.folder / self.current.path, self.schema,
                                       compression=self.spec.shards.compression)
        self.current_bytes = 0

    def close(self) -> None:
        if self.writer is not None and self.current is not None:
            self.writer.close()
            path = self.folder / self.current.path
            self.current.bytes, self.current.sha256 = path.stat().st_size, file_sha256(path)
        self.writer, self.current = None, None

    def write(self, split: str, group: pa.Table) -> None:
        if self.current is not None and (self.current.split != split or self.current_bytes >= self.target_bytes):
            self.close()
        if self.current is None:
            self._open(split)
        assert self.writer is not None and self.current is not None
        self.writer.write_table(group, row_group_size=group.num_rows)
        self.current.rows += group.num_rows
        # bytes of the images plus a flat estimate for metadata: a function of content only
        self.current_bytes += int(pc.sum(pc.binary_length(group.column("image"))).as_py() or 0)
        self.current_bytes += 256 * group.num_rows


def write_shards(balanced: pa.Table, raw_files: Sequence[Path], spec: DatasetSpec, folder: Path) -> ShardSet:
    """Write shards under folder/shards/ and return their list with the content hash."""
    (folder / "shards").mkdir(parents=True, exist_ok=True)
    writer: _ShardWriter | None = None
    digest = hashlib.sha256()
    batches = _ordered_batches(balanced, raw_files, spec, 4 * spec.shards.row_group_rows)
    for split, group in _row_groups(batches, spec.shards.row_group_rows):
        group = group.combine_chunks()
        if writer is None:
            writer = _ShardWriter(folder, group.schema, spec)
        writer.write(split, group)
        for batch in group.to_batches():
            _hash_batch(digest, batch)
    if writer is None:
        raise ValueError("no rows to write: the balanced dataset is empty")
    writer.close()
    for shard in writer.shards:
        digest.update(f"{shard.path}:{shard.rows}".encode())
    return ShardSet(shards=writer.shards, content_hash=digest.hexdigest())
