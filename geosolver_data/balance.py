"""Geographic balance: per-cell quotas, deterministic selection and spatially disjoint splits.

Quotas are tempered (quota ∝ count^alpha, alpha=1 keeps the raw distribution, alpha=0 gives
every cell the same), capped per cell and water-filled so they add up to the target size.
Within a cell the images with the lowest keyed hash of their id are taken, so adding new data
changes the selection minimally. Splits are drawn per H3 block at a coarser resolution, so no
block (and no cell inside it) contributes to two splits.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from geosolver_data.geo import cell_parent
from geosolver_data.geocells import h3_column
from geosolver_data.spec import BalanceSpec

SPLIT_ORDER = ("train", "val", "test")


def keyed_hash(values: list[str] | list[int], seed: int, salt: str) -> np.ndarray:
    """A stable 64-bit hash per value (BLAKE2b keyed by seed and purpose), as uint64."""
    key = f"{seed}:{salt}".encode()[:64]
    out = np.empty(len(values), dtype=np.uint64)
    for i, v in enumerate(values):
        out[i] = int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8, key=key).digest(), "little")
    return out


def tempered_quotas(counts: np.ndarray, alpha: float, cap: int, target: int) -> np.ndarray:
    """Integer quota per cell: min(count, cap, λ·count^alpha), λ water-filled so the sum hits the target.

    The target is lowered to what the cells can give (sum of min(count, cap)). Rounding is by
    largest remainder, ties to the earlier cell, so the result is deterministic.
    """
    counts = np.asarray(counts, dtype=np.float64)
    ceiling = np.minimum(counts, cap)
    total = min(float(target), float(ceiling.sum()))
    if total <= 0:
        return np.zeros(len(counts), dtype=np.int64)
    weights = counts**alpha
    lo, hi = 0.0, float(ceiling.max() / weights.min()) + 1.0
    for _ in range(200):  # bisection on λ: the sum is monotone in λ
        mid = (lo + hi) / 2
        if np.minimum(ceiling, mid * weights).sum() < total:
            lo = mid
        else:
            hi = mid
    real = np.minimum(ceiling, hi * weights)
    quota = np.floor(real).astype(np.int64)
    short = round(total) - int(quota.sum())
    if short > 0:
        room = quota < ceiling
        order = np.lexsort((np.arange(len(real)), -(real - quota)))  # largest remainder first
        quota[order[room[order]][:short]] += 1
    return quota


def distribution_stats(counts: np.ndarray) -> dict[str, float]:
    """Cells covered, Gini, normalised entropy and top-1% cell share of per-cell counts."""
    counts = np.sort(np.asarray(counts, dtype=np.float64)[np.asarray(counts) > 0])
    n, total = len(counts), counts.sum()
    if n == 0:
        return {"cells": 0, "images": 0, "gini": 0.0, "entropy": 0.0, "top1pct_share": 0.0}
    gini = float(2 * np.sum(np.arange(1, n + 1) * counts) / (n * total) - (n + 1) / n)
    p = counts / total
    entropy = float(-(p * np.log(p)).sum() / math.log(n)) if n > 1 else 1.0
    top = max(1, math.ceil(0.01 * n))
    return {"cells": n, "images": int(total), "gini": round(gini, 4), "entropy": round(entropy, 4),
            "top1pct_share": round(float(counts[-top:].sum() / total), 4)}


def assign_splits(blocks: np.ndarray, spec: BalanceSpec) -> np.ndarray:
    """Split name per row, drawn once per block from its keyed hash."""
    uniq, inverse = np.unique(blocks, return_inverse=True)
    u = keyed_hash(uniq.tolist(), spec.seed, "split").astype(np.float64) / 2.0**64
    edges = np.cumsum([spec.splits.get(s, 0.0) for s in SPLIT_ORDER])
    idx = np.minimum(np.searchsorted(edges, u, side="right"), len(SPLIT_ORDER) - 1)
    return np.array(SPLIT_ORDER, dtype=object)[idx][inverse]


@dataclass(frozen=True)
class BalanceResult:
    table: pa.Table  # the selected rows with a `split` column
    report: dict


def balance(table: pa.Table, spec: BalanceSpec) -> BalanceResult:
    """Select a balanced subset of `table` (which has `image_id` and `h3_r<resolution>`)."""
    cells = table.column(h3_column(spec.resolution)).to_numpy()
    uniq, cell_idx, counts = np.unique(cells, return_inverse=True, return_counts=True)
    quota = tempered_quotas(counts, spec.alpha, spec.cap, spec.target_size)
    rank_key = keyed_hash(table.column("image_id").to_pylist(), spec.seed, "select")
    order = np.lexsort((rank_key, cell_idx))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order)) - starts[cell_idx[order]]
    chosen = np.flatnonzero(position < quota[cell_idx])
    selected = table.take(chosen)
    splits = assign_splits(cell_parent(cells[chosen], spec.split_resolution), spec)
    selected = selected.append_column("split", pa.array(splits.tolist(), pa.string()))
    after = np.bincount(cell_idx[chosen], minlength=len(uniq))
    report = {
        "before": distribution_stats(counts),
        "after": distribution_stats(after),
        "quota_max": int(quota.max()) if len(quota) else 0,
        "splits": {s: int((splits == s).sum()) for s in SPLIT_ORDER},
        "split_blocks": {s: len(np.unique(cell_parent(cells[chosen], spec.split_resolution)[splits == s]))
                         for s in SPLIT_ORDER},
    }
    return BalanceResult(table=selected, report=report)
