"""An OpenStreetView-5M-shaped dataset repo: `<split>.csv` and `images/<split>/NN.zip`, each archive a
random share of every region's photos (as OSV-5M's are), with the awkward parts real archives have."""

from __future__ import annotations

import io
import random
import zipfile
from dataclasses import dataclass, field

from tests.fakes.imagery import jpeg_bytes

Box = tuple[float, float, float, float]  # min_lon, min_lat, max_lon, max_lat


@dataclass
class Osv5mRepo:
    files: dict[str, bytes]
    points: dict[str, tuple[float, float]]  # every listed id -> (lat, lon)
    member_bytes: dict[str, int] = field(default_factory=dict)  # id -> its member's header, name and bytes
    missing: set[str] = field(default_factory=set)  # listed, in no archive
    corrupt: set[str] = field(default_factory=set)  # a member whose bytes do not match its CRC
    member_at: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (its archive, its offset)

    def ids_in(self, box: Box) -> set[str]:
        return {i for i, (lat, lon) in self.points.items() if box[1] <= lat <= box[3] and box[0] <= lon <= box[2]}


def osv5m_repo(regions: list[tuple[Box, int]], archives: int = 4, split: str = "train", seed: int = 0,
               size: tuple[int, int] = (320, 240), awkward: bool = True) -> Osv5mRepo:
    """`regions`: (box, photos) each. With `awkward`: one listed id without a photo, one corrupt member,
    a zip64 archive whose members carry zip64 local extra fields, an archive with a 60 KB comment,
    and one whose central directory is larger than an archive's tail (1,200 other members)."""
    rng = random.Random(seed)
    points = {}
    for box, count in regions:
        for _ in range(count):
            points[str(rng.randrange(10**14, 10**15))] = (rng.uniform(box[1] + 1e-4, box[3] - 1e-4),
                                                          rng.uniform(box[0] + 1e-4, box[2] - 1e-4))
    ids = list(points)
    repo = Osv5mRepo({}, points)
    if awkward:
        repo.missing.add(ids[-1])
        repo.corrupt.add(ids[0])
    shares: list[list[str]] = [[] for _ in range(archives)]
    for key in ids:
        if key not in repo.missing:
            shares[rng.randrange(archives)].append(key)
    for n, keys in enumerate(shares):
        path = f"images/{split}/{n:02d}.zip"
        repo.files[path] = _located(repo, path, _archive(keys, f"{split}/{n:02d}", size, awkward and n == 1,
                                                          awkward and n == 2, awkward and n == 3))
    rows = "".join(f"{key},{lat:.6f},{lon:.6f},DE,seq{k % 7},2021-06-0{1 + k % 9}T10:00:00,user{k % 3}\n"
                   for k, (key, (lat, lon)) in enumerate(points.items()))
    repo.files[f"{split}.csv"] = ("id,latitude,longitude,country,sequence,captured_at,creator_username\n"
                                  + rows).encode()
    repo.files["README.md"] = b"---\nlicense: cc-by-sa-4.0\n---\n# OSV-5M (shaped)\n"
    return repo


def _archive(keys: list[str], folder: str, size: tuple[int, int], zip64: bool, comment: bool, crowded: bool) -> bytes:
    buffer = io.BytesIO()
    limit = zipfile.ZIP_FILECOUNT_LIMIT
    if zip64:  # zipfile writes the zip64 end records past this many entries
        zipfile.ZIP_FILECOUNT_LIMIT = 1
    try:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for key in keys:
                with archive.open(f"{folder}/{key}.jpg", "w", force_zip64=zip64) as member:
                    member.write(jpeg_bytes(int(key) % 100_000, size))
            if comment:
                archive.comment = b"c" * 60_000
            if crowded:
                for k in range(1200):
                    archive.writestr(f"{folder}/notes/{k}.txt", b"x")
    finally:
        zipfile.ZIP_FILECOUNT_LIMIT = limit
    return buffer.getvalue()


def _located(repo: Osv5mRepo, path: str, archive_bytes: bytes) -> bytes:
    """Record where each photo's member lies (and its size); flip a byte of a corrupt one's data."""
    data = bytearray(archive_bytes)
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as archive:
        infos = [i for i in archive.infolist() if i.filename.rsplit("/", 1)[-1][:-4] in repo.points]
    for info in infos:
        key, at = info.filename.rsplit("/", 1)[-1][:-4], info.header_offset
        local = 30 + int.from_bytes(data[at + 26:at + 28], "little") + int.from_bytes(data[at + 28:at + 30], "little")
        repo.member_bytes[key] = local + info.compress_size
        repo.member_at[key] = (path, at)
        if key in repo.corrupt:  # a byte of its data flipped, its CRC left as it was
            data[at + local + 200] ^= 0xFF
    return bytes(data)
