"""Sub-partitions: one region's ingest split into `sub_partitions` runs that any machine can take.

A candidate belongs to part `blake2b(image_id) mod N`, decided from its id alone, before a byte is
read and whatever the source (positions can be unknown until the EXIF is read). Every part lists the
region's candidates and keeps only its own; each part has its own ledger, raw_images, rejects and
listing, so parts run in any order, at once, on different machines, and the dataset built from all
of them is the one an unsplit ingest builds (dedup, balance and shards are order-independent).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def part_of(image_id: str, parts: int) -> int:
    """The part an image id belongs to: stable across processes, machines and Python versions."""
    if parts <= 1:
        return 0
    digest = hashlib.blake2b(image_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % parts


def part_label(part: int, parts: int) -> str:
    """A part's name in partition keys and folders, zero-padded so they sort: 0..N-1."""
    return f"{part:0{len(str(parts - 1))}d}"


@dataclass(frozen=True)
class IngestUnit:
    """One region, or one part of a region: what one ingest run takes."""

    region: str
    part: int = 0
    parts: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.part < self.parts:
            raise ValueError(f"part {self.part} of region {self.region!r} is not in 0..{self.parts - 1}")

    @property
    def folder(self) -> str:
        """Its files' folder under each work area: the region's, or a part folder inside it."""
        if self.parts == 1:
            return self.region
        return f"{self.region}/part-{part_label(self.part, self.parts)}-of-{self.parts}"

    @property
    def name(self) -> str:
        """For logs and errors: `region` or `region|part`, as the Dagster partition key reads."""
        return self.region if self.parts == 1 else f"{self.region}|{part_label(self.part, self.parts)}"

    def owns(self, image_id: str) -> bool:
        return self.parts == 1 or part_of(image_id, self.parts) == self.part


def units(regions: list[str], parts: int) -> list[IngestUnit]:
    """Every ingest unit of a dataset, region by region."""
    return [IngestUnit(r, p, parts) for r in regions for p in range(parts)]
