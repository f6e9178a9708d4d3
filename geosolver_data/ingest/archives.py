"""A columnar index of the images under a folder (loose `<id>.jpg` files and members of zip archives),
and reading one archive member by the offset the index holds.

OpenStreetView-5M ships 5.1M images in ~100 zip archives. A Python dict of them costs gigabytes, and
`zipfile.ZipFile` builds an object for every member of an archive it opens: a worker that opens
every archive would hold all 5.1M. So the index is an Arrow table (DuckDB joins it to the metadata),
and a worker reads a member straight from its offset, size and CRC, without parsing the archive's
central directory again.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
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
        infos = [i for i in archive.infolist() if i.filename.lower().endswith(".jpg") and not i.is_dir()]
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
    head = os.pread(fd, _LOCAL_HEADER.size, at.offset)
    if len(head) < _LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile("no member at the offset the index holds (the archive changed?)")
    _, _, flags, _, _, _, _, _, _, name_length, extra_length = _LOCAL_HEADER.unpack(head)
    if flags & _ENCRYPTED:
        raise zipfile.BadZipFile("the member is encrypted")
    data = os.pread(fd, at.packed, at.offset + _LOCAL_HEADER.size + name_length + extra_length)
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
