"""Versioned index artifacts: indexes/<version>/{index.faiss, ids.parquet, manifest.json}.

The version is a hash of what the index is built from (kind, model version, dataset version,
index settings): same inputs, same version. Files are checked against their sha256 before use.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geosolver_data.layout import file_sha256, publish_dir, staging_dir, write_json, write_text
from geosolver_data.spec import IndexSpec
from geosolver_model import index as ix

KINDS = ("image", "gps")
FILES = ("index.faiss", "ids.parquet")


class IndexUnavailable(RuntimeError):
    """A missing, corrupted or mismatched index; the message says which and what to do."""


@dataclass(frozen=True)
class IndexArtifact:
    version: str
    path: Path
    manifest: dict
    new: bool


def indexes_root(home: Path) -> Path:
    return home / "indexes"


def index_version(kind: str, model_version: str, dataset_version: str, spec: IndexSpec, extra: dict) -> str:
    key = {"kind": kind, "model": model_version, "dataset": dataset_version, "index": spec.model_dump(), **extra}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def publish_index(home: Path, kind: str, version: str, vectors: np.ndarray, ids: pa.Table, queries: np.ndarray,
                  spec: IndexSpec, provenance: dict) -> IndexArtifact:
    """Choose, build, tune and write an index unless this version is already published."""
    root = indexes_root(home)
    final = root / version
    if (final / "manifest.json").exists():
        write_text(root / f"LATEST_{kind}", version + "\n")
        return IndexArtifact(version, final, json.loads((final / "manifest.json").read_text()), new=False)
    started = time.perf_counter()
    choice = ix.choose_index(len(vectors), vectors.shape[1], int(spec.memory_budget_gb * 2**30))
    index = ix.build(vectors, choice)
    k = min(10, len(vectors))
    truth = ix.exact_top_k(vectors, queries, k)
    value, recall = ix.tune(index, choice, queries, truth, spec.recall_target)
    ix.set_param(index, choice, value)
    build_s = time.perf_counter() - started
    p50, p99 = ix.latency_ms(index, queries[:200], k)
    staging = staging_dir(root)
    faiss.write_index(index, str(staging / "index.faiss"))
    pq.write_table(ids, staging / "ids.parquet")
    manifest = {
        "version": version, "kind": kind, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **provenance,
        "index": {"key": choice.key, "search_param": choice.param, "search_value": value,
                  "metric": "inner_product", "dim": int(vectors.shape[1]), "count": len(vectors)},
        "recall_at_10": round(recall, 4), "latency_ms": {"p50": round(p50, 4), "p99": round(p99, 4)},
        "build_s": round(build_s, 2), "settings": spec.model_dump(),
        "files": {name: file_sha256(staging / name) for name in FILES},
    }
    write_json(staging / "manifest.json", manifest)
    new = publish_dir(staging, final)
    write_text(root / f"LATEST_{kind}", version + "\n")
    return IndexArtifact(version, final, json.loads((final / "manifest.json").read_text()), new)


def resolve(home: Path, kind: str, version: str | None = None) -> Path:
    root = indexes_root(home)
    if version is None:
        pointer = root / f"LATEST_{kind}"
        if not pointer.exists():
            raise IndexUnavailable(f"no {kind} index under {root}: materialise the index assets first (make run)")
        version = pointer.read_text().strip()
    folder = root / version
    if not (folder / "manifest.json").exists():
        raise IndexUnavailable(f"index version {version!r} does not exist under {root} (see `geosolver index list`)")
    return folder


def load_index(folder: Path) -> tuple[faiss.Index, pa.Table, dict]:
    """The index, its id table and manifest, after checking every file's sha256."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.exists() or file_sha256(path) != expected:
            raise IndexUnavailable(f"{path}: missing or corrupted (sha256 differs from the manifest); "
                              "rebuild it by materialising the index asset again")
    index = faiss.read_index(str(folder / "index.faiss"))
    if manifest["index"]["search_param"]:
        faiss.ParameterSpace().set_index_parameter(index, manifest["index"]["search_param"],
                                                   manifest["index"]["search_value"])
    return index, pq.read_table(folder / "ids.parquet"), manifest


def list_indexes(home: Path) -> list[dict]:
    rows = [json.loads(p.read_text()) for p in indexes_root(home).glob("*/manifest.json")]
    return sorted(rows, key=lambda m: m["created_at"])


def prune(home: Path, keep: int) -> list[str]:
    """Delete all but the newest `keep` versions of each kind; the LATEST ones are always kept."""
    root = indexes_root(home)
    latest = {(root / f"LATEST_{k}").read_text().strip() for k in KINDS if (root / f"LATEST_{k}").exists()}
    removed = []
    for kind in KINDS:
        versions = [m["version"] for m in list_indexes(home) if m["kind"] == kind]
        for version in versions[: max(0, len(versions) - keep)]:
            if version not in latest:
                shutil.rmtree(root / version)
                removed.append(version)
    return removed
