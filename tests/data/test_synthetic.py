import hashlib
from pathlib import Path

import numpy as np

from geosolver_data.ingest.sources.scene import render_scene
from geosolver_data.ingest.sources.synthetic import synthesize_region
from geosolver_data.spec import Region, SourceSpec

EUROPE = Region(name="europe", bbox=(-11.0, 35.0, 32.0, 61.0))
ASIA = Region(name="asia", bbox=(60.0, -45.0, 155.0, 46.0))
SRC = SourceSpec(type="synthetic", per_region=20, seed=5)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_synthesis_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    a = synthesize_region(tmp_path / "a", EUROPE, (EUROPE, ASIA), SRC)
    b = synthesize_region(tmp_path / "b", EUROPE, (EUROPE, ASIA), SRC)
    assert _digest(a) == _digest(b)
    mtime = (a / "complete.json").stat().st_mtime_ns
    assert synthesize_region(tmp_path / "a", EUROPE, (EUROPE, ASIA), SRC) == a
    assert (a / "complete.json").stat().st_mtime_ns == mtime  # done once, not rewritten
    files = [p for p in a.rglob("*") if p.is_file() and p.name != "complete.json"]
    assert ".jpg" in {p.suffix for p in files} and len({p.suffix for p in files}) >= 2  # a mix of formats
    assert any(p.parent.name == "reuploads" for p in files) and (a / "broken" / "truncated.jpg").exists()
    assert not list(tmp_path.glob("a/.staging-*"))


# The files this generator wrote before it painted on threads (issue #14, item 7), for these parameters:
# parallel painting must not change a byte of the demo (its dataset version depends on them).
BEFORE_THREADS = "5d2be71e7239f1f9a2c7129f06d4b4defd9faaae3d9189f83c748d7e04c6dd90"


def test_painting_on_threads_writes_the_same_bytes_as_before(tmp_path: Path) -> None:
    src = SourceSpec(type="synthetic", per_region=20, seed=5, same_place_share=0.3)
    one = synthesize_region(tmp_path / "one", EUROPE, (EUROPE, ASIA), src, threads=1)
    four = synthesize_region(tmp_path / "four", EUROPE, (EUROPE, ASIA), src, threads=4)
    assert _digest(one) == _digest(four) == BEFORE_THREADS


def test_other_parameters_rebuild_the_folder(tmp_path: Path) -> None:
    a = synthesize_region(tmp_path, EUROPE, (EUROPE,), SRC)
    first = _digest(a)
    synthesize_region(tmp_path, EUROPE, (EUROPE,), SourceSpec(type="synthetic", per_region=20, seed=6))
    assert _digest(a) != first


def _mean_views(lat: float, lon: float, seed: int, n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.mean([np.asarray(render_scene(lat, lon, "FR", 100_000, rng), dtype=np.float64)
                    for _ in range(n)], axis=0)


def test_scene_content_depends_on_location() -> None:
    paris, paris_again = _mean_views(48.85, 2.35, 0), _mean_views(48.85, 2.35, 1)
    singapore = _mean_views(1.35, 103.8, 2)
    same = np.abs(paris - paris_again).mean()
    far = np.abs(paris - singapore).mean()
    assert far > 2 * same, (far, same)
