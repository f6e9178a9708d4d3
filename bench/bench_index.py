"""Index benchmark (issue: embedding indexes). Prints one JSON line per index.

1,000,000 synthetic 768-d vectors, clustered (not uniform), unit-normalised; 200 held-out
queries from the same distribution. For the index Geosolver chooses under a 1 GiB budget, and for
plain exact search (the baseline) side by side: build time, index size, recall@10 against exact
search, and p50/p99 single-query latency (one thread). Goal: recall@10 >= 0.95 at p50 <= 2 ms.

Run from the repo root: .venv/bin/python -m bench.bench_index [--n 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import faiss
import numpy as np

from geosolver_model.retrieval.index import build, choose_index, exact_top_k, latency_ms, recall_at_k, set_param, tune

GIB = 2**30


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def clustered(n: int, d: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d), dtype=np.float32)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 100_000):  # in blocks, to keep peak memory near the result's size
        size = min(100_000, n - start)
        block = centres[rng.integers(0, clusters, size)] + 0.6 * rng.standard_normal((size, d), dtype=np.float32)
        out[start:start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def size_bytes(index: faiss.Index) -> int:
    with tempfile.NamedTemporaryFile(suffix=".faiss") as f:
        faiss.write_index(index, f.name)
        return os.path.getsize(f.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--budget-gib", type=float, default=1.0)
    args = parser.parse_args()
    data = clustered(args.n + 200, args.d, clusters=2000, seed=0)
    base, queries = data[: args.n], data[args.n:]
    truth = exact_top_k(base, queries, 10)

    start = time.perf_counter()
    flat = faiss.IndexFlatIP(args.d)
    flat.add(base)
    p50, p99 = latency_ms(flat, queries[:50])
    emit(bench="index_exact_baseline", key="Flat", vectors=args.n, build_s=round(time.perf_counter() - start, 2),
         size_gib=round(size_bytes(flat) / GIB, 3), recall_at_10=1.0, p50_ms=round(p50, 3), p99_ms=round(p99, 3))
    del flat

    choice = choose_index(args.n, args.d, int(args.budget_gib * GIB))
    start = time.perf_counter()
    index = build(base, choice)
    build_s = time.perf_counter() - start
    value, recall = tune(index, choice, queries[:100], truth[:100], target=0.95)
    set_param(index, choice, value)
    held_out = recall_at_k(index.search(queries[100:], 10)[1], truth[100:])
    p50, p99 = latency_ms(index, queries)
    emit(bench="index_chosen", key=choice.key, param={choice.param: value}, vectors=args.n,
         build_s=round(build_s, 1), size_gib=round(size_bytes(index) / GIB, 3), budget_gib=args.budget_gib,
         recall_at_10_tuning=round(recall, 4), recall_at_10_held_out=round(held_out, 4),
         p50_ms=round(p50, 3), p99_ms=round(p99, 3), goal="recall@10 >= 0.95 at p50 <= 2 ms")


if __name__ == "__main__":
    main()
