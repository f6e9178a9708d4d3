"""Find all pairs of 64-bit hashes within a Hamming distance, without comparing all pairs.

Multi-index hashing (Norouzi et al. 2012): cut the hash into m bands. Two hashes that differ in
at most k bits differ in at most k bands, so at least s = m - k bands are equal. Joining on every
combination of s bands (one masked key each) therefore finds every pair within k, and with keys
of 64*s/m bits the join yields few false candidates, which the exact popcount then removes.
"""

from __future__ import annotations

import itertools
import math

import duckdb
import numpy as np


def band_masks(m: int) -> list[int]:
    """64 bits cut into m contiguous bands, as integer masks."""
    edges = np.linspace(0, 64, m + 1).round().astype(int)
    return [((1 << int(hi - lo)) - 1) << int(lo) for lo, hi in itertools.pairwise(edges)]


def choose_bands(n: int, k: int) -> int:
    """The band count m (> k) that minimises probe rows plus expected random candidates."""
    best, best_cost = k + 1, math.inf
    for m in range(k + 1, min(64, k + 12)):
        s = m - k
        keys = math.comb(m, s)
        key_bits = 64 * s / m
        cost = keys * n + keys * n * n / 2 / 2.0**key_bits
        if cost < best_cost:
            best, best_cost = m, cost
    return best


def key_masks(k: int, n: int) -> list[int]:
    """One mask per combination of s = m - k bands."""
    m = choose_bands(n, k)
    bands = band_masks(m)
    return [sum(c) for c in itertools.combinations(bands, m - k)]


def near_pairs(con: duckdb.DuckDBPyConnection, table: str, k: int) -> np.ndarray:
    """Pairs (a, b, distance) with a < b and popcount(h_a ^ h_b) <= k.

    `table` has columns `id` (BIGINT, unique) and `h` (UBIGINT). Returns an (P, 3) int64 array
    sorted by (b, a).
    """
    n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    if n < 2:
        return np.zeros((0, 3), dtype=np.int64)
    masks = key_masks(k, n)
    con.execute("CREATE OR REPLACE TEMP TABLE _masks (c INTEGER, mask UBIGINT)")
    con.executemany("INSERT INTO _masks VALUES (?, ?)", list(enumerate(masks)))
    rows = con.execute(f"""
        WITH keys AS (SELECT m.c, t.h & m.mask AS key, t.id, t.h FROM {table} t, _masks m)
        SELECT DISTINCT a.id AS a, b.id AS b, bit_count(xor(a.h, b.h)) AS d
        FROM keys a JOIN keys b ON a.c = b.c AND a.key = b.key AND a.id < b.id
        WHERE bit_count(xor(a.h, b.h)) <= {int(k)}
        ORDER BY b, a
    """).fetchnumpy()
    con.execute("DROP TABLE _masks")
    return np.stack([rows["a"], rows["b"], rows["d"]], axis=1).astype(np.int64) if len(rows["a"]) else \
        np.zeros((0, 3), dtype=np.int64)
