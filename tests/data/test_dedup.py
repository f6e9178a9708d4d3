from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geosolver_data.dedup import deduplicate, greedy_keep
from geosolver_data.schemas import RAW_SCHEMA
from geosolver_data.spec import DedupSpec

RNG = np.random.default_rng(7)
FAR = iter(int(x) for x in RNG.integers(0, 2**64, 100, dtype=np.uint64))


def _flip(h: int, n: int, start: int = 0) -> int:
    for bit in range(start, start + n):
        h ^= 1 << bit
    return h


def _row(image_id: str, phash: int, sha: str | None = None, lat: float = 10.0, lon: float = 20.0,
         seq: str | None = None, size: tuple[int, int] = (336, 252)) -> dict:
    return {"image_id": image_id, "source": "t", "lat": lat, "lon": lon,
            "captured_at": datetime(2020, 1, 1, tzinfo=UTC), "sequence_id": seq, "license": None,
            "creator": None, "width": size[0], "height": size[1], "sha256": sha or image_id, "phash": phash,
            "image": b""}


def _run(tmp_path: Path, rows: list[dict], files: int = 1) -> tuple[set[str], dict[str, dict]]:
    paths = []
    for i in range(files):
        path = tmp_path / f"raw{i}.parquet"
        pq.write_table(pa.Table.from_pylist(rows[i::files], schema=RAW_SCHEMA), path)
        paths.append(path)
    stats = deduplicate(paths, DedupSpec(phash_threshold=4, same_place_m=5), tmp_path / "k.parquet",
                        tmp_path / "d.parquet")
    kept = set(pq.read_table(tmp_path / "k.parquet").column("image_id").to_pylist())
    dropped = {r["image_id"]: r for r in pq.read_table(tmp_path / "d.parquet").to_pylist()}
    assert stats.kept == len(kept) and sum(stats.dropped.values()) == len(dropped)
    assert stats.candidates == len(rows) == len(kept) + len(dropped)
    return kept, dropped


def test_exact_duplicates_keep_the_largest_then_smallest_id(tmp_path: Path) -> None:
    h = next(FAR)
    kept, dropped = _run(tmp_path, [
        _row("b", h, sha="S", size=(336, 252)),
        _row("a", h, sha="S", size=(200, 150)),
        _row("c", h, sha="S", size=(336, 252)),
    ], files=2)
    assert kept == {"b"}
    assert dropped["a"]["reason"] == dropped["c"]["reason"] == "exact"
    assert dropped["a"]["duplicate_of"] == "b" and dropped["a"]["distance"] == 0


def test_perceptual_duplicates_within_threshold_only(tmp_path: Path) -> None:
    h, other = next(FAR), next(FAR)
    kept, dropped = _run(tmp_path, [
        _row("p1", h), _row("p2", _flip(h, 3)), _row("p3", _flip(h, 5, start=10)), _row("q", other),
    ])
    assert kept == {"p1", "p3", "q"}
    assert dropped["p2"] == {"image_id": "p2", "reason": "perceptual", "duplicate_of": "p1", "distance": 3.0}


def test_chains_drop_only_what_is_within_threshold_of_a_kept_image(tmp_path: Path) -> None:
    h = next(FAR)
    c2 = _flip(h, 3)
    c3 = _flip(c2, 3, start=20)  # 3 bits from c2, 6 from c1
    kept, dropped = _run(tmp_path, [_row("c1", h), _row("c2", c2), _row("c3", c3)])
    assert kept == {"c1", "c3"} and dropped["c2"]["duplicate_of"] == "c1"


def test_same_place_means_same_sequence_within_metres(tmp_path: Path) -> None:
    deg_per_m = 1 / 111_320
    kept, dropped = _run(tmp_path, [
        _row("s1", next(FAR), seq="A"),
        _row("s2", next(FAR), seq="A", lat=10.0 + 2 * deg_per_m),
        _row("s3", next(FAR), seq="A", lat=10.0 + 50 * deg_per_m),
        _row("s4", next(FAR), seq="B", lat=10.0 + 1 * deg_per_m),
        _row("s5", next(FAR), seq=None),
    ])
    assert kept == {"s1", "s3", "s4", "s5"}
    assert dropped["s2"]["reason"] == "same_place" and dropped["s2"]["duplicate_of"] == "s1"
    assert dropped["s2"]["distance"] == pytest.approx(2.0, abs=0.05)


def test_repeated_image_ids_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        _run(tmp_path, [_row("x", next(FAR)), _row("x", next(FAR))], files=2)


def test_greedy_keep_on_a_star() -> None:
    # 0 is near 1, 2 and 3; they are not near each other: only 0 survives
    pairs = np.array([[0, 1, 2], [0, 2, 2], [0, 3, 2]])
    kept, dup_of, _ = greedy_keep(4, pairs)
    assert kept.tolist() == [True, False, False, False] and dup_of.tolist() == [-1, 0, 0, 0]
