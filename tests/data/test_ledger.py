"""Image bytes stored once, a refresh with nothing new that rewrites nothing, and a consolidation that
gives the same files whichever of its steps a crash interrupts (real ingests of a folder of photos)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from geosolver_data.ingest import ledger as ledger_module
from geosolver_data.spec import parse_spec
from geosolver_data.stages import ingest_region
from geosolver_data.store.home import DatasetLayout
from tests.data.images_util import encode, noise_image

EUROPE = [-11, 35, 32, 61]


def _photos(folder: Path, first: int, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(first, first + n):
        (folder / f"p{i:03d}.jpg").write_bytes(encode(noise_image(i, (400, 300)), lat=40 + i * 0.05, lon=2.0))
    (folder / "broken.jpg").write_text("<html>not a photo</html>")


def _spec(folder: Path):
    return parse_spec({"name": "led", "workers": 1, "regions": [{"name": "europe", "bbox": EUROPE}],
                       "sources": [{"type": "local", "name": "mine", "path": str(folder)}]})


def _files(layout: DatasetLayout) -> tuple[Path, Path, Path]:
    ledger = next((layout.work / "ledger" / "europe").iterdir())
    return layout.raw_images("europe", "mine"), layout.raw_rejects("europe", "mine"), ledger


def _content(layout: DatasetLayout) -> tuple[list, list]:
    raw, rejects, _ = _files(layout)
    rows = sorted(pq.read_table(raw).to_pylist(), key=lambda r: r["image_id"])
    return rows, pq.read_table(rejects).to_pylist()


def _ingested(tmp_path: Path, n: int):
    """n photos (and one broken file) upstream, ingested once into tmp_path/home: (spec, layout)."""
    _photos(tmp_path / "photos", 0, n)
    spec = _spec(tmp_path / "photos")
    layout = DatasetLayout(tmp_path / "home", spec.name)
    ingest_region(spec, layout, "europe", log=lambda _: None)
    return spec, layout


def _clean_content(tmp_path: Path, spec) -> tuple[list, list]:
    """What one uninterrupted ingest of everything upstream gives, in a home of its own."""
    clean = DatasetLayout(tmp_path / "clean", spec.name)
    ingest_region(spec, clean, "europe", log=lambda _: None)
    return _content(clean)


def _stamp(path: Path) -> tuple[int, int]:
    return path.stat().st_ino, path.stat().st_mtime_ns


def test_bytes_are_stored_once_and_a_refresh_with_nothing_new_rewrites_nothing(tmp_path: Path) -> None:
    spec, layout = _ingested(tmp_path, 12)
    raw, rejects, ledger = _files(layout)
    assert pq.ParquetFile(raw).metadata.num_rows == 12 and rejects.exists()
    assert not list(ledger.glob("rows-*.parquet"))  # the bytes live in raw_images only
    (slim,) = ledger.glob("slim-*.parquet")
    assert pq.ParquetFile(slim).schema_arrow.names == ["image_id", "captured_at"]
    ledger_bytes = sum(p.stat().st_size for p in ledger.rglob("*") if p.is_file())
    assert ledger_bytes < raw.stat().st_size / 10

    before = {p: _stamp(p) for p in layout.work.rglob("*") if p.is_file()}
    assert layout.listing("europe", "mine") in before
    again = ingest_region(spec, layout, "europe", log=lambda _: None)["mine"]
    assert again.ingested == 0 and again.already_done == 13
    after = {p: _stamp(p) for p in layout.work.rglob("*") if p.is_file()}
    assert after == before  # nothing new: no file under work/ written (ledger, listing, tables)

    _photos(tmp_path / "photos", 12, 3)  # three new photos upstream
    ingest_region(spec, layout, "europe", log=lambda _: None)
    assert _content(layout) == _clean_content(tmp_path, spec)  # appended to the base: same as one run over all 15
    assert pq.ParquetFile(raw).metadata.num_rows == 15 and len(list(ledger.glob("slim-*.parquet"))) == 1


@pytest.mark.parametrize("crash", ["before_rename", "before_slim", "before_cleanup", "before_state"])
def test_a_crash_anywhere_in_consolidation_then_a_rerun_gives_the_same_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: str) -> None:
    spec, layout = _ingested(tmp_path, 8)
    _photos(tmp_path / "photos", 8, 4)  # the second run has new rows to append to the base

    class Crash(Exception):
        pass

    real_write, real_unlink, real_save = pq.write_table, Path.unlink, ledger_module.Ledger.save_state

    def write_table(table, where, *args, **kwargs):
        if crash == "before_slim" and ".slim-" in str(where):
            raise Crash
        return real_write(table, where, *args, **kwargs)

    def unlink(path: Path, *args, **kwargs):
        if crash == "before_cleanup" and path.name.startswith(("rows-", "slim-")):
            raise Crash
        return real_unlink(path, *args, **kwargs)

    def save_state(self, state: dict):
        if crash == "before_rename" and "pending_base" in state and "base" in state \
                and state["pending_base"] != state["base"]:
            real_save(self, state)
            raise Crash  # announced, never renamed
        if crash == "before_state" and "pending_base" not in state and state.get("base") \
                and len(list(self.root.glob("slim-*.parquet"))) == 1 and not list(self.root.glob("rows-*")):
            raise Crash
        return real_save(self, state)

    with monkeypatch.context() as patch:
        patch.setattr(ledger_module.pq, "write_table", write_table)
        patch.setattr(Path, "unlink", unlink)
        patch.setattr(ledger_module.Ledger, "save_state", save_state)
        with pytest.raises(Crash):
            ingest_region(spec, layout, "europe", log=lambda _: None)
    ingest_region(spec, layout, "europe", log=lambda _: None)  # the rerun
    assert _content(layout) == _clean_content(tmp_path, spec)
    assert ingest_region(spec, layout, "europe", log=lambda _: None)["mine"].ingested == 0


def test_a_raw_images_file_rewritten_elsewhere_is_not_trusted_as_the_base(tmp_path: Path) -> None:
    spec, layout = _ingested(tmp_path, 6)
    raw, _, _ = _files(layout)
    good = _content(layout)
    table = pq.read_table(raw)
    pq.write_table(table.slice(0, 2), raw)  # another ledger (other settings) wrote this region's file
    logs: list[str] = []
    again = ingest_region(spec, layout, "europe", log=logs.append)["mine"]
    assert any("will be fetched again" in line for line in logs)
    assert again.ingested == 6 and _content(layout) == good


@pytest.mark.parametrize("damaged", ["raw_images", "rejects", "state"])
def test_damaged_ingest_state_is_named_set_aside_and_rebuilt(tmp_path: Path, damaged: str) -> None:
    """A raw_images or rejects file cut short, or a state.json cut short: the next run names it, sets it
    aside, fetches again what it held, and ends with the same files as before the damage."""
    spec, layout = _ingested(tmp_path, 6)
    before = _content(layout)
    raw, rejects, ledger = _files(layout)
    target = {"raw_images": raw, "rejects": rejects, "state": ledger / "state.json"}[damaged]
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])
    logs: list[str] = []
    ingest_region(spec, layout, "europe", log=logs.append)
    assert _content(layout) == before
    if damaged != "state":
        assert any(str(target) in line and "set aside" in line for line in logs), logs
    assert list(target.parent.glob(".damaged-*"))  # kept for inspection, out of the way
