"""The index stages the Dagster assets call: embed every shard row, build the image and GPS indexes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from geosolver_data.gazetteer import load_gazetteer
from geosolver_data.geo import h3_cells
from geosolver_data.spec import DatasetSpec
from geosolver_model.artifacts import IndexArtifact, index_version, publish_index
from geosolver_model.embed import EmbeddingSet, embed_dataset, embedding_files, load_embeddings
from geosolver_model.gallery import build_gallery
from geosolver_model.model import GeoRetriever
from geosolver_model.stages import PUBLISHED, ModelVersion

Log = Callable[[str], None]
# the reference set is train + val: the test split stays out of the index, it is what we evaluate on
MAX_QUERIES = 200


def _dataset_dir(home: Path, spec: DatasetSpec, model: ModelVersion) -> Path:
    return home / "datasets" / spec.name / model.manifest["dataset"]["version"]


def embed(spec: DatasetSpec, home: Path, model: ModelVersion, log: Log = print) -> EmbeddingSet:
    """Embed what is not embedded yet (nothing, and no model load, on a rerun)."""
    return embed_dataset(lambda: GeoRetriever.load(model.path / PUBLISHED), model.version,
                         _dataset_dir(home, spec, model), home, log)


def coverage_problems(spec: DatasetSpec, home: Path, model: ModelVersion) -> list[str]:
    """Embedding rows must be exactly the dataset's rows, each once."""
    manifest = json.loads((_dataset_dir(home, spec, model) / "manifest.json").read_text())
    files = embedding_files(home, model.version, manifest)
    missing = [f.name for f in files if not f.exists()]
    if missing:
        return [f"no embeddings for {len(missing)} shard(s): {missing[:3]}"]
    ids = pa.concat_tables([pq.read_table(f, columns=["image_id"]) for f in files]).column("image_id")
    problems = []
    if len(ids) != manifest["rows"]:
        problems.append(f"{len(ids)} embeddings for {manifest['rows']} rows")
    if len(ids.unique()) != len(ids):
        problems.append(f"{len(ids) - len(ids.unique())} image ids embedded more than once")
    return problems


def _queries(test: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Held-out queries: test-split image embeddings, else a sample of the indexed vectors."""
    if len(test) == 0:
        test = fallback[np.random.default_rng(0).choice(len(fallback), min(len(fallback), MAX_QUERIES), replace=False)]
    return test[:MAX_QUERIES]


def image_index(spec: DatasetSpec, home: Path, model: ModelVersion, embeddings: EmbeddingSet) -> IndexArtifact:
    """Image -> image kNN over the reference (train + val) rows."""
    meta, vectors = load_embeddings(embeddings.files)
    is_test = np.asarray(meta.column("split").to_pylist()) == "test"
    test = vectors[is_test]
    meta, vectors = meta.filter(pa.array(~is_test)), vectors[~is_test]
    provenance = {"model_version": model.version, "dataset": model.manifest["dataset"]}
    version = index_version("image", model.version, model.manifest["dataset"]["version"], spec.index, {})
    return publish_index(home, "image", version, vectors, meta, _queries(test, vectors), spec.index,
                         provenance)


@torch.no_grad()
def gps_index(spec: DatasetSpec, home: Path, model: ModelVersion, embeddings: EmbeddingSet) -> IndexArtifact:
    """Location-encoder embeddings of the GPS gallery (train locations, one per H3 cell)."""
    res = spec.model.gallery_resolution
    gallery = build_gallery(_dataset_dir(home, spec, model), res)
    net = GeoRetriever.load(model.path / PUBLISHED)
    vectors = net.encode_gps(torch.as_tensor(gallery)).numpy().astype(np.float32)
    gaz = load_gazetteer()
    nearest = gaz.nearest(gallery[:, 0], gallery[:, 1])
    ids = pa.table({"lat": gallery[:, 0].astype(np.float64), "lon": gallery[:, 1].astype(np.float64),
                    f"h3_r{res}": pa.array(h3_cells(gallery[:, 0], gallery[:, 1], [res])[res], pa.uint64()),
                    "country": gaz.country[nearest].tolist(), "place": gaz.name[nearest].tolist()})
    provenance = {"model_version": model.version, "dataset": model.manifest["dataset"], "gallery_resolution": res}
    version = index_version("gps", model.version, model.manifest["dataset"]["version"], spec.index,
                            {"gallery_resolution": res})
    test = load_embeddings(embeddings.files, ("test",))[1]
    return publish_index(home, "gps", version, vectors, ids, _queries(test, vectors), spec.index,
                         provenance)
