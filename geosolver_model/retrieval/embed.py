"""Embed every shard row once, keyed by image id; incremental per shard.

Embeddings of a shard are stored under embeddings/<model version>/<shard sha256>.parquet, so a new
dataset version that shares shards with the last one only embeds the shards that changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from geosolver_data.ingest.progress import Progress
from geosolver_data.schemas import OLD_SPLIT_NAMES
from geosolver_data.store.atomic import atomic_path
from geosolver_data.store.manifests import DatasetManifest, read_dataset_manifest
from geosolver_model.net.images import decode
from geosolver_model.net.model import GeoRetriever

BATCH = 64
META = ["image_id", "lat", "lon", "country", "split"]


@dataclass(frozen=True)
class EmbeddingSet:
    files: list[Path]  # one per shard, in manifest order
    embedded: int  # rows embedded in this call
    reused: int  # rows whose shard was already embedded


@torch.no_grad()
def embed_images(model: GeoRetriever, images: list[bytes]) -> np.ndarray:
    pixels = torch.stack([model.pixels(decode(b)) for b in images])
    return model.encode_images(pixels).cpu().numpy().astype(np.float32)


def _embed_shard(model: GeoRetriever, shard: Path, h3_cols: list[str], out: Path) -> int:
    parquet = pq.ParquetFile(shard)
    tables = []
    for i in range(parquet.num_row_groups):
        group = parquet.read_row_group(i, columns=["image", *META, *h3_cols])
        vectors = np.concatenate([embed_images(model, group.column("image").to_pylist()[s:s + BATCH])
                                  for s in range(0, group.num_rows, BATCH)])
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])
        tables.append(group.drop_columns(["image"]).append_column("embedding", column))
    with atomic_path(out) as tmp:
        pq.write_table(pa.concat_tables(tables), tmp)
    return parquet.metadata.num_rows


def embedding_files(folder: Path, dataset_manifest: DatasetManifest) -> list[Path]:
    """Where each shard's embeddings live in a model's folder: named by the shard's sha256, so
    unchanged shards are reused."""
    return [folder / f"{shard.sha256[:32]}.parquet" for shard in dataset_manifest.shards]


def embed_dataset(load_model: Callable[[], GeoRetriever], dataset_dir: Path, folder: Path,
                  log: Callable[[str], None] = print) -> EmbeddingSet:
    """Embed the shards that have no embeddings in `folder` yet; the model is loaded only if there are any."""
    manifest = read_dataset_manifest(dataset_dir)
    h3_cols = [f"h3_r{r}" for r in manifest.h3_resolutions]
    files = embedding_files(folder, manifest)
    model, embedded, reused = None, 0, 0
    progress = Progress("embedding", log, every_s=10.0,
                        total=sum(s.rows for s, out in zip(manifest.shards, files, strict=True) if not out.exists()))
    for shard, out in zip(manifest.shards, files, strict=True):
        if out.exists():
            reused += shard.rows
            continue
        model = model or load_model().eval()
        embedded += _embed_shard(model, dataset_dir / shard.path, h3_cols, out)
        progress.advance(shard.rows)
    progress.close(report=embedded > 0)  # the last line, images and rate, when there was something to embed
    return EmbeddingSet(files, embedded, reused)


def load_embeddings(files: list[Path], splits: tuple[str, ...] | None = None) -> tuple[pa.Table, np.ndarray]:
    """(metadata table, (N, D) float32 vectors), optionally keeping only some splits."""
    table = pa.concat_tables([pq.read_table(f) for f in files])
    if splits is not None:  # rows of an older version say `val` for `validation`
        wanted = [*splits, *(old for old, new in OLD_SPLIT_NAMES.items() if new in splits)]
        table = table.filter(pa.compute.is_in(table.column("split"), pa.array(wanted)))
    emb = table.column("embedding").combine_chunks()
    dim = emb.type.list_size
    vectors = emb.values.to_numpy(zero_copy_only=False).reshape(len(emb), dim).astype(np.float32)
    return table.drop_columns(["embedding"]), vectors
