"""The columnar image index and reading archive members by offset, against zipfile itself."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from geosolver_data.ingest.archives import MemberAt, image_index, read_member
from geosolver_data.stages import ingest_region
from geosolver_data.store.home import DatasetLayout
from tests.data.test_lists_and_resume import remote_spec
from tests.fakes.imagery import jpeg_bytes


def _archive(path: Path, members: dict[str, bytes], method: int) -> None:
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _at(row: dict) -> MemberAt:
    return MemberAt(row["_offset"], row["_packed"], row["_size"], row["_method"], row["_crc"])


def test_index_and_members_read_as_zipfile_reads_them(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "b_loose").mkdir(parents=True)
    stored = {f"00/{i}.jpg": jpeg_bytes(i) for i in range(5)}
    deflated = {f"01/{i}.jpg": jpeg_bytes(i + 10) for i in range(3, 8)} | {"01/notes.txt": b"x", "01/dir/": b""}
    _archive(images / "a.zip", stored, zipfile.ZIP_STORED)
    _archive(images / "c.zip", deflated, zipfile.ZIP_DEFLATED)
    (images / "b_loose" / "9.jpg").write_bytes(jpeg_bytes(9))
    (images / "b_loose" / "4.jpg").write_bytes(b"a later copy of 4: not the one indexed")
    index = image_index(images).to_pylist()
    # A folder's files in name order (a.zip, c.zip), then its subfolders (b_loose/); the first place of
    # an id wins (3 and 4 of c.zip, and b_loose's 4, are later copies).
    assert [r["key"] for r in index] == ["0", "1", "2", "3", "4", "5", "6", "7", "9"]
    where = {r["key"]: r for r in index}
    assert where["9"]["_member"] is None and where["9"]["_path"].endswith("9.jpg")
    assert where["3"]["_path"].endswith("a.zip") and where["7"]["_method"] == zipfile.ZIP_DEFLATED
    for name, archive in (("a.zip", stored), ("c.zip", deflated)):
        fd = os.open(images / name, os.O_RDONLY)
        try:
            with zipfile.ZipFile(images / name) as oracle:
                for row in index:
                    if row["_path"].endswith(name):
                        assert read_member(fd, _at(row)) == oracle.read(row["_member"]) == archive[row["_member"]]
        finally:
            os.close(fd)


def test_a_damaged_or_changed_archive_is_an_error_never_wrong_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    _archive(path, {"0.jpg": jpeg_bytes(0), "1.jpg": jpeg_bytes(1)}, zipfile.ZIP_DEFLATED)
    rows = image_index(tmp_path).to_pylist()
    at = _at(rows[1])
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(zipfile.BadZipFile, match="offset"):
            read_member(fd, at._replace(offset=at.offset + 1))
        with pytest.raises(zipfile.BadZipFile, match="size and CRC"):
            read_member(fd, at._replace(size=at.size - 1))  # a declared size smaller than the bytes: a bomb
        with pytest.raises(zipfile.BadZipFile, match="size and CRC"):
            read_member(fd, at._replace(crc=at.crc ^ 1))
        with pytest.raises(zipfile.BadZipFile, match="ends inside"):
            read_member(fd, at._replace(packed=10**9))
        with pytest.raises(zipfile.BadZipFile, match="method 12"):
            read_member(fd, at._replace(method=12))
    finally:
        os.close(fd)


def test_a_corrupt_member_is_rejected_and_the_rest_ingested(home: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    ids = [str(8_000_000 + i) for i in range(4)]
    _archive(images / "00.zip", {f"00/{k}.jpg": jpeg_bytes(int(k)) for k in ids}, zipfile.ZIP_STORED)
    bad = next(r for r in image_index(images).to_pylist() if r["key"] == ids[2])
    data = bytearray((images / "00.zip").read_bytes())
    spot = bad["_offset"] + 30 + len(bad["_member"]) + 100  # inside the member's stored bytes
    data[spot] ^= 0xFF
    (images / "00.zip").write_bytes(bytes(data))
    metadata = tmp_path / "train.csv"
    metadata.write_text("id,latitude,longitude\n" + "".join(f"{k},50.1,10.1\n" for k in ids))
    spec = remote_spec({"type": "osv5m", "path": str(metadata), "images": str(images)})
    layout = DatasetLayout(home, spec.name)
    for region in spec.region_names:
        ingest_region(spec, layout, region, log=lambda _: None)
    region = spec.region_names[0]
    stored = set(pq.read_table(layout.raw_images(region, "osv5m")).column("image_id").to_pylist())
    rejects = pq.read_table(layout.raw_rejects(region, "osv5m")).to_pylist()
    assert stored == {f"osv5m:{k}" for k in ids if k != ids[2]}
    assert [(r["image_id"], r["reason"]) for r in rejects] == [(f"osv5m:{ids[2]}", "unreadable_file")]
    assert "CRC" in rejects[0]["detail"]
