"""A columnar index of the images under a folder (loose `<id>.jpg` files and members of zip archives),
and reading one archive member by the offset the index holds.

OpenStreetView-5M ships 5.1M images in ~100 zip archives. A Python dict of them costs gigabytes, and
`zipfile.ZipFile` builds an object for every member of an archive it opens: a worker that opens
every archive would hold all 5.1M. So the index is an Arrow table (DuckDB joins it to the metadata),
and a worker reads a member straight from its offset, size and CRC, without parsing the archive's
central directory again.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

INDEX_SCHEMA = pa.schema([
    ("key", pa.string()),  # the file name without .jpg: the image's id
    ("_path", pa.string()),  # the loose file, or the archive holding the member
    ("_member", pa.string()),  # null for a loose file
    ("_offset", pa.int64()),  # of the member's local header in the archive
    ("_packed", pa.int64()),  # bytes stored
    ("_size", pa.int64()),  # bytes once decompressed
    ("_method", pa.int64()),  # zipfile.ZIP_STORED or ZIP_DEFLATED
    ("_crc", pa.int64()),
])


class MemberAt(NamedTuple):
    """Where an archive member's bytes lie, from the archive's central directory (read once, when
    the index is built)."""

    offset: int
    packed: int
    size: int
    method: int
    crc: int


def _members(path: str) -> pa.RecordBatch:
    """The .jpg members of one archive (each archive's ZipInfo objects are dropped before the next)."""
    with zipfile.ZipFile(path) as archive:
        return members_batch(archive.infolist(), path)


def members_batch(infos: list[zipfile.ZipInfo], path: str) -> pa.RecordBatch:
    """The .jpg members among an archive's entries, as rows of INDEX_SCHEMA under `path`."""
    infos = [i for i in infos if i.filename.lower().endswith(".jpg") and not i.is_dir()]
    names = pa.array([i.filename for i in infos], pa.string())
    base = pc.replace_substring_regex(names, r"^.*/", "")
    return pa.RecordBatch.from_arrays([
        pc.utf8_slice_codeunits(base, 0, -4), pa.array([path] * len(infos), pa.string()), names,
        *(pa.array([getattr(i, field) for i in infos], pa.int64())
          for field in ("header_offset", "compress_size", "file_size", "compress_type", "CRC")),
    ], schema=INDEX_SCHEMA)


def _loose(paths: list[str]) -> pa.RecordBatch:
    keys = [os.path.basename(p)[:-4] for p in paths]
    nulls = pa.nulls(len(paths))
    return pa.RecordBatch.from_arrays([pa.array(keys, pa.string()), pa.array(paths, pa.string()),
                                       nulls.cast(pa.string()), *(nulls.cast(pa.int64()),) * 5], schema=INDEX_SCHEMA)


def image_index(root: Path) -> pa.Table:
    """Every `<id>.jpg` under root, loose or in a *.zip (a folder's files in name order, then its
    subfolders; the first place an id is found wins), as a table of INDEX_SCHEMA."""
    batches: list[pa.RecordBatch] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        loose: list[str] = []
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if name.lower().endswith(".jpg"):
                loose.append(path)
            elif name.lower().endswith(".zip"):
                if loose:
                    batches.append(_loose(loose))
                    loose = []
                batches.append(_members(path))
        if loose:
            batches.append(_loose(loose))
    table = pa.Table.from_batches(batches, schema=INDEX_SCHEMA)
    if pc.count_distinct(table.column("key")).as_py() == len(table):
        return table  # the usual case: no id twice
    table = table.append_column("_pos", pa.array(np.arange(len(table), dtype=np.int64)))
    first = table.group_by("key", use_threads=False).aggregate([("_pos", "min")]).column("_pos_min")
    return table.take(np.sort(first.to_numpy())).drop_columns(["_pos"])  # in the walk's order


_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # signature ... file name length, extra field length
_ENCRYPTED = 0x1


def read_member(fd: int, at: MemberAt) -> bytes:
    """The bytes of one member of the archive open as `fd`, checked against the central directory's
    size and CRC. zipfile.BadZipFile when the archive does not hold what the index says (it changed
    since, or is damaged), or the member is encrypted or compressed in a way not read here."""
    return unpack_member(lambda offset, n: os.pread(fd, n, offset), at)


Read = Callable[[int, int], bytes]  # (offset, count) -> up to count bytes of the archive from offset


def member_span(at: MemberAt, name: str) -> tuple[int, int]:
    """The bytes [start, end) of an archive that almost always hold the member's local header, name,
    extra field and data: one HTTP range request. The local extra field may be longer than the
    central directory's (timestamps, zip64 sizes); OutsideWindow names the rest when it is."""
    return at.offset, at.offset + _LOCAL_HEADER.size + len(name.encode()) + LOCAL_EXTRA_ALLOWANCE + at.packed


LOCAL_EXTRA_ALLOWANCE = 128  # bytes allowed for a member's local extra field in member_span


class OutsideWindow(Exception):
    """A read past the bytes fetched; `end` is where the member's bytes really end."""

    def __init__(self, end: int) -> None:
        super().__init__(f"the member's bytes end at {end}")
        self.end = end


def window_reader(window: bytes, start: int) -> Read:
    """A Read over `window`, the archive's bytes from `start`: OutsideWindow for a read past its end."""
    def read(offset: int, n: int) -> bytes:
        if offset < start or offset + n > start + len(window):
            raise OutsideWindow(offset + n)
        return window[offset - start:offset - start + n]
    return read


def unpack_member(read: Read, at: MemberAt) -> bytes:
    """The member's bytes through `read` (a local file, or a window fetched over HTTP), checked
    against the central directory's size and CRC; zipfile.BadZipFile as read_member says."""
    head = read(at.offset, _LOCAL_HEADER.size)
    if len(head) < _LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile("no member at the offset the index holds (the archive changed?)")
    _, _, flags, _, _, _, _, _, _, name_length, extra_length = _LOCAL_HEADER.unpack(head)
    if flags & _ENCRYPTED:
        raise zipfile.BadZipFile("the member is encrypted")
    data = read(at.offset + _LOCAL_HEADER.size + name_length + extra_length, at.packed)
    if len(data) != at.packed:
        raise zipfile.BadZipFile("the archive ends inside the member")
    if at.method == zipfile.ZIP_DEFLATED:
        inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        data = inflate.decompress(data, at.size + 1)  # never more than the declared size (a bomb)
    elif at.method != zipfile.ZIP_STORED:
        raise zipfile.BadZipFile(f"compression method {at.method} is not read (only stored and deflated)")
    if len(data) != at.size or zlib.crc32(data) != at.crc:
        raise zipfile.BadZipFile("the member's bytes do not match its size and CRC")
    return data


class TailFile(io.RawIOBase):
    """The end of an archive held in memory, seekable as if it were the whole file, so that zipfile
    parses the central directory (zip64 included) from a few range requests instead of the archive.
    A read before the bytes held raises NeedEarlier with the offset to fetch from."""

    def __init__(self, size: int, start: int, data: bytes) -> None:
        self.size, self.start, self.data, self.pos = size, start, data, 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else self.size + offset
        return self.pos

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        if self.pos < self.start and end > self.pos:
            raise NeedEarlier(self.pos)
        out = self.data[self.pos - self.start:end - self.start]
        self.pos += len(out)
        return out


class NeedEarlier(Exception):
    """zipfile asked for bytes before those fetched (a long comment, a central directory not in the tail)."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"bytes from {offset} are needed")
        self.offset = offset


TAIL_BYTES = 65_536 + 22 + 20 + 56  # the longest end-of-central-directory record with its zip64 records


def directory_from_tail(size: int, start: int, data: bytes, path: str) -> pa.RecordBatch:
    """The .jpg members of an archive of `size` bytes, from its bytes [start, size) (NeedEarlier
    when the central directory begins before `start`; zipfile.BadZipFile for a damaged end)."""
    with zipfile.ZipFile(TailFile(size, start, data)) as archive:  # type: ignore[arg-type]
        return members_batch(archive.infolist(), path)
