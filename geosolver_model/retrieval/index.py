"""FAISS indexes chosen under a memory budget, tuned to a recall target, the way autofaiss does it.

Exact (Flat) for small sets; HNSW while its vectors and links fit; IVF with 8-bit scalar
quantisation, then OPQ + IVF-PQ, for millions. IVF and OPQ are trained on a sample; the search
parameter (nprobe or efSearch) is raised until recall@10 against exact search on held-out queries
reaches the target. Vectors are unit-normalised and compared by inner product (cosine).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geosolver_data.model_spec import IndexConfig
from geosolver_data.store.artifact import Artifact, ArtifactMissing
from geosolver_data.store.atomic import file_sha256
from geosolver_data.store.home import Home
from geosolver_data.store.manifests import IndexManifest

FLAT_MAX = 200_000  # beyond this, exact search is too slow per query even when it fits


@dataclass(frozen=True)
class IndexChoice:
    key: str  # a faiss.index_factory string
    param: str  # the search parameter that trades speed for recall ("" for exact)
    bytes_per_vector: float


def choose_index(n: int, d: int, budget_bytes: int) -> IndexChoice:
    nlist = int(2 ** round(math.log2(max(16.0, 4 * math.sqrt(n)))))
    nlist = max(1, min(nlist, n // 39))  # faiss wants ~39 training points per centroid
    # An exact coarse quantizer up to 8192 lists (its cost per query is small next to scanning the
    # lists, and approximate assignment loses recall); an HNSW one beyond.
    coarse = f"IVF{nlist}" if nlist <= 8192 else f"IVF{nlist}_HNSW32"
    options = [
        (n <= FLAT_MAX, IndexChoice("Flat", "", 4 * d)),
        (True, IndexChoice("HNSW32,Flat", "efSearch", 4 * d + 32 * 2 * 4 * 1.1)),
        (nlist >= 16, IndexChoice(f"{coarse},SQ8", "nprobe", d + 8)),
    ]
    for allowed, choice in options:
        if allowed and choice.bytes_per_vector * n <= budget_bytes:
            return choice
    m = max(8, min(64, d // 12 // 4 * 4))
    return IndexChoice(f"OPQ{m}_{4 * m},{coarse},PQ{m}", "nprobe", m + 8)


def faiss_gpus() -> int:
    """GPUs FAISS can use: 0 with faiss-cpu (the default install); faiss-gpu's count otherwise."""
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def build(vectors: np.ndarray, choice: IndexChoice, seed: int = 0, gpu: bool = False) -> faiss.Index:
    """Build and fill the index; IVF k-means runs 10 iterations on ~50 points per list (at most
    200k), which is where the training time goes and where more data stops helping. With `gpu` (and
    faiss-gpu installed) the k-means assignment runs on the GPUs, as autofaiss does; the index itself
    stays a CPU index, which is what `predict` loads."""
    index = faiss.index_factory(vectors.shape[1], choice.key, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.niter = 10
        ivf.cp.seed = seed
        if gpu and faiss_gpus():
            ivf.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatL2(vectors.shape[1]))
        size = min(len(vectors), max(10_000, min(200_000, 50 * ivf.nlist)))
        sample = vectors[np.random.default_rng(seed).choice(len(vectors), size, replace=False)]
        index.train(sample)
    index.add(vectors)
    return index


def flat_index(vectors: np.ndarray) -> faiss.Index:
    """Exact inner-product search over the vectors (what an in-memory comparison needs, no tuning)."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, gpu: bool = False) -> np.ndarray:
    """The true neighbours that recall is measured against (brute force; on the GPUs with `gpu`)."""
    flat = flat_index(vectors)
    if gpu and faiss_gpus():
        flat = faiss.index_cpu_to_all_gpus(flat)
    return flat.search(queries, k)[1]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def latency_ms(index: faiss.Index, queries: np.ndarray, k: int = 10) -> tuple[float, float]:
    """p50, p99 of single-query search, one thread (what one request costs)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        times = []
        for q in queries:
            start = time.perf_counter()
            index.search(q[None], k)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        faiss.omp_set_num_threads(threads)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def set_param(index: faiss.Index, choice: IndexChoice, value: int) -> None:
    if choice.param:
        faiss.ParameterSpace().set_index_parameter(index, choice.param, value)


TUNING_MARGIN = 0.02  # tuned on a few hundred queries: aim a little higher so unseen queries reach the target


def tune(index: faiss.Index, choice: IndexChoice, queries: np.ndarray, truth: np.ndarray,
         target: float) -> tuple[int, float]:
    """The search parameter to use, and the recall@10 it reached on the queries.

    The smallest value reaching target + margin; else the smallest reaching the target; else (the
    codes cap the recall, as 8-bit quantisation does) the smallest within 0.002 of the best seen,
    rather than a value that costs 100x the latency for nothing.
    """
    k = truth.shape[1]
    if not choice.param:
        return 0, recall_at_k(index.search(queries, k)[1], truth)
    values = [2**i for i in range(0, 12)]
    if choice.param == "efSearch":
        values = [v for v in values if v >= k]
    seen: list[tuple[int, float]] = []
    for value in values:
        set_param(index, choice, value)
        seen.append((value, recall_at_k(index.search(queries, k)[1], truth)))
        if seen[-1][1] >= min(1.0, target + TUNING_MARGIN):
            return seen[-1]
    reaching = [vr for vr in seen if vr[1] >= target]
    if reaching:
        return reaching[0]
    best = max(r for _, r in seen)
    return next(vr for vr in seen if vr[1] >= best - 0.002)


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, row ids), both (Q, k); ids are -1 where fewer than k exist."""
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


# --- an index as files: index.faiss + ids.parquet, checked against their sha256 before use ---

FILES = ("index.faiss", "ids.parquet")


class IndexUnavailable(ArtifactMissing):
    """A missing, corrupted or mismatched index; the message says which and what to do."""


def write_index(folder: Path, vectors: np.ndarray, ids: pa.Table, queries: np.ndarray, config: IndexConfig,
                gpu: bool = False) -> dict:
    """Choose, build and tune an index for the vectors, write its files into `folder`, and return
    what its manifest says about it. `gpu`: train and measure on the GPUs where faiss-gpu is installed."""
    started = time.perf_counter()
    choice = choose_index(len(vectors), vectors.shape[1], int(config.memory_budget_gb * 2**30))
    index = build(vectors, choice, gpu=gpu)
    k = min(10, len(vectors))
    value, recall = tune(index, choice, queries, exact_top_k(vectors, queries, k, gpu), config.recall_target)
    set_param(index, choice, value)
    build_s = time.perf_counter() - started
    p50, p99 = latency_ms(index, queries[:200], k)
    faiss.write_index(index, str(folder / "index.faiss"))
    pq.write_table(ids, folder / "ids.parquet")
    return {
        "index": {"key": choice.key, "search_param": choice.param, "search_value": value,
                  "metric": "inner_product", "dim": int(vectors.shape[1]), "count": len(vectors)},
        "recall_at_10": round(recall, 4), "latency_ms": {"p50": round(p50, 4), "p99": round(p99, 4)},
        "build_s": round(build_s, 2), "settings": config.model_dump(),
        "files": {name: file_sha256(folder / name) for name in FILES},
    }


def load_index(folder: Path) -> tuple[faiss.Index, pa.Table, IndexManifest]:
    """The index, its id table and manifest, after checking every file's sha256."""
    manifest = IndexManifest.model_validate(json.loads((folder / "manifest.json").read_text()))
    for name, expected in manifest.files.items():
        path = folder / name
        if not path.exists() or file_sha256(path) != expected:
            raise IndexUnavailable(f"{path}: missing or corrupted (sha256 differs from the manifest); "
                                   "rebuild it by materialising the index asset again")
    index = faiss.read_index(str(folder / "index.faiss"))
    if manifest.index.search_param:
        faiss.ParameterSpace().set_index_parameter(index, manifest.index.search_param, manifest.index.search_value)
    return index, pq.read_table(folder / "ids.parquet"), manifest


SERIES = ("image", "gps")


def require_image_index(home: Home, version: str | None = None) -> None:
    """ArtifactMissing (one line, with the remedy) when the image index asked for, or any, is not published;
    cheap, and free of torch, so a command can say it before loading the model."""
    shelf = home.indexes("image")
    if version:
        shelf.get(version)
    elif shelf.latest_version() is None:
        raise ArtifactMissing(f"no image index is published under {shelf.root}: materialise the model and index "
                              "assets first (`make run` builds the demo's)")


def all_indexes(home: Home) -> list[Artifact[IndexManifest]]:
    """Every index version of every series, oldest first."""
    return home.indexes(SERIES[0]).all()  # the series share one folder


def prune(home: Home, keep: int) -> list[str]:
    """Delete all but the newest `keep` versions of each series; the latest of each is always kept."""
    latest = {home.indexes(s).latest_version() for s in SERIES}
    removed = []
    for series in SERIES:
        versions = [a.version for a in all_indexes(home) if a.info.kind == series]
        for version in versions[: max(0, len(versions) - keep)]:
            if version not in latest:
                home.indexes(series).remove(version)
                removed.append(version)
    return removed
