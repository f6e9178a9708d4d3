"""Geographic balance: per-cell quotas, deterministic selection and spatially disjoint splits.

Quotas are tempered (quota ∝ count^alpha, alpha=1 keeps the raw distribution, alpha=0 gives
every cell the same), capped per cell and water-filled so they add up to the target size.
Within a cell the images with the lowest keyed hash of their id are taken, so adding new data
changes the selection minimally.

Splits are assigned per H3 block at `split_resolution` (`split_blocks`), so no block contributes to two
splits: blocks the previous version had keep their split (a test image never
becomes a training image in a later version), and new blocks go, largest first, to the split
furthest below its share, so the shares land near the spec's fractions even when a few blocks are
big. Across a block boundary two images can still be close, so an image closer than SPLIT_BUFFER_KM
to one of an evaluation split (test, then val) is left out of the dataset.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy.spatial import cKDTree

from geosolver_data.geo import EARTH_RADIUS_KM, cell_parent, h3_cells
from geosolver_data.geocells import h3_column
from geosolver_data.schemas import SPLITS
from geosolver_data.spec import BalanceSpec

SPLIT_ORDER = SPLITS


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


SPLIT_BUFFER_KM = 1.0


def split_blocks(cells: np.ndarray, lat: np.ndarray | None, lon: np.ndarray | None,
                 spec: BalanceSpec) -> np.ndarray:
    """Each row's split block: the H3 cell at `split_resolution`, the parent of its balance cell (at
    `resolution`) when that is as coarse or coarser, else computed from its coordinates (then needed)."""
    if spec.split_resolution <= spec.resolution:
        return cell_parent(cells, spec.split_resolution)
    if lat is None or lon is None:
        raise ValueError(f"split blocks at resolution {spec.split_resolution}, finer than the balance cells' "
                         f"{spec.resolution}, are computed from lat and lon, which are missing")
    return h3_cells(lat, lon, [spec.split_resolution])[spec.split_resolution]


def assign_splits(blocks: np.ndarray, spec: BalanceSpec, prior: dict[int, str] | None = None) -> np.ndarray:
    """Split name per row. Blocks in `prior` (block -> split, from the previous version) keep their
    split; the others, largest first (ties by keyed hash), go to the split furthest below its share."""
    uniq, inverse, sizes = np.unique(np.asarray(blocks, dtype=np.uint64), return_inverse=True, return_counts=True)
    target = np.array([spec.splits.get(s, 0.0) for s in SPLIT_ORDER])
    assigned = np.array([SPLIT_ORDER.index(prior[b]) if prior and b in prior else -1 for b in uniq.tolist()],
                        dtype=np.int64)
    counts = np.bincount(assigned[assigned >= 0], weights=sizes[assigned >= 0], minlength=len(SPLIT_ORDER))
    total = counts.sum()
    order = np.lexsort((keyed_hash(uniq.tolist(), spec.seed, "split"), -sizes))
    for i in order[assigned[order] < 0]:
        total += sizes[i]
        deficit = np.where(target > 0, target * total - counts, -np.inf)
        assigned[i] = int(np.argmax(deficit))
        counts[assigned[i]] += sizes[i]
    return np.array(SPLIT_ORDER, dtype=object)[assigned][inverse]


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)


def buffer_drops(lat: np.ndarray, lon: np.ndarray, splits: np.ndarray, km: float = SPLIT_BUFFER_KM) -> np.ndarray:
    """Rows to leave out so that no two images of different splits are closer than `km`: the
    evaluation splits keep theirs (test, then val), the other side gives way."""
    xyz = _unit_vectors(lat, lon)
    radius = 2 * math.sin(km / (2 * EARTH_RADIUS_KM))  # the chord of `km` on the unit sphere
    drop = np.zeros(len(splits), dtype=bool)
    for keep, yield_ in (("test", ("validation", "train")), ("validation", ("train",))):
        anchors = np.flatnonzero((splits == keep) & ~drop)
        others = np.flatnonzero(np.isin(splits, yield_) & ~drop)
        if len(anchors) and len(others):
            near = cKDTree(xyz[anchors]).query(xyz[others], distance_upper_bound=radius)[0] <= radius
            drop[others[near]] = True
    return drop


@dataclass(frozen=True)
class BalanceResult:
    table: pa.Table  # the selected rows with a `split` column
    report: dict


def balance(table: pa.Table, spec: BalanceSpec, prior: dict[int, str] | None = None) -> BalanceResult:
    """Select a balanced subset of `table` (which has `image_id`, `lat`, `lon` and `h3_r<resolution>`);
    `prior` maps the previous version's split blocks to their splits."""
    cells = table.column(h3_column(spec.resolution)).to_numpy()
    uniq, cell_idx, counts = np.unique(cells, return_inverse=True, return_counts=True)
    quota = tempered_quotas(counts, spec.alpha, spec.cap, spec.target_size)
    rank_key = keyed_hash(table.column("image_id").to_pylist(), spec.seed, "select")
    order = np.lexsort((rank_key, cell_idx))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order)) - starts[cell_idx[order]]
    chosen = np.flatnonzero(position < quota[cell_idx])
    lat, lon = table.column("lat").to_numpy()[chosen], table.column("lon").to_numpy()[chosen]
    blocks = split_blocks(cells[chosen], lat, lon, spec)
    splits = assign_splits(blocks, spec, prior)
    keep = ~buffer_drops(lat, lon, splits)
    chosen, blocks, splits = chosen[keep], blocks[keep], splits[keep]
    selected = table.take(chosen).append_column("split", pa.array(splits.tolist(), pa.string()))
    after = np.bincount(cell_idx[chosen], minlength=len(uniq))
    sizes = {s: int((splits == s).sum()) for s in SPLIT_ORDER}
    report = {
        "before": distribution_stats(counts),
        "after": distribution_stats(after),
        "quota_max": int(quota.max()) if len(quota) else 0,
        "splits": sizes,
        "split_fractions": {s: round(n / max(1, len(splits)), 4) for s, n in sizes.items()},
        "split_blocks": {s: len(np.unique(blocks[splits == s])) for s in SPLIT_ORDER},
        "split_blocks_from_previous_version": len(set(np.unique(blocks).tolist()) & set(prior or {})),
        "split_buffer_km": SPLIT_BUFFER_KM,
        "left_out_within_split_buffer": int((~keep).sum()),
    }
    return BalanceResult(table=selected, report=report)
