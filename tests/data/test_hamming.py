import itertools

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from geosolver_data.hamming import band_masks, key_masks, near_pairs


def _brute(h: np.ndarray, k: int) -> set[tuple[int, int]]:
    return {(i, j) for i, j in itertools.combinations(range(len(h)), 2)
            if (int(h[i]) ^ int(h[j])).bit_count() <= k}


def _hashes(n: int, planted: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, n, dtype=np.uint64)
    for _ in range(planted):  # near copies at distance 0..k
        i, j = rng.choice(n, 2, replace=False)
        v = int(h[i])
        for bit in rng.choice(64, int(rng.integers(0, k + 1)), replace=False):
            v ^= 1 << int(bit)
        h[j] = v
    # and a few pairs exactly one bit beyond the threshold, which must not be reported
    for _ in range(planted // 2):
        i, j = rng.choice(n, 2, replace=False)
        v = int(h[i])
        for bit in rng.choice(64, k + 1, replace=False):
            v ^= 1 << int(bit)
        h[j] = v
    return h


def test_band_masks_partition_the_64_bits() -> None:
    for m in (1, 5, 6, 7, 13):
        masks = band_masks(m)
        assert sum(masks) == 2**64 - 1 and len(masks) == m
        assert all(a & b == 0 for a, b in itertools.combinations(masks, 2))
    assert all(mask.bit_count() >= 64 // 2 for mask in key_masks(1, 1000))


@pytest.mark.parametrize(("k", "seed"), [(0, 0), (2, 1), (4, 2), (6, 3), (8, 4)])
def test_near_pairs_equal_brute_force(k: int, seed: int) -> None:
    h = _hashes(1200, 150, k, seed)
    con = duckdb.connect()
    con.register("src", pa.table({"id": np.arange(len(h)), "h": h}))
    con.execute("CREATE TABLE t AS SELECT * FROM src")
    pairs = near_pairs(con, "t", k)
    assert {(int(a), int(b)) for a, b, _ in pairs} == _brute(h, k)
    assert all((int(h[a]) ^ int(h[b])).bit_count() == d for a, b, d in pairs)


def test_tiny_inputs() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (id BIGINT, h UBIGINT)")
    assert near_pairs(con, "t", 4).shape == (0, 3)
