"""The local source: any folder of geotagged photos (EXIF GPS), JPEG, PNG or WebP."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from geosolver_data.ingest.candidates import Candidate

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})


@dataclass(frozen=True)
class LocalFile:
    """One candidate photo: its id is the source label plus the path relative to the folder."""

    image_id: str
    path: Path
    sequence_id: str | None


def list_photos(root: Path, label: str, sequence_from: str = "folder", under: str = "") -> Iterator[LocalFile]:
    """Photos under `root` (or its subfolder `under`) in a stable (sorted) order; hidden files and
    folders are skipped. Ids are relative to `root`, so they stay unique across subfolders.

    With sequence_from="folder", the photo's folder is its sequence, so same-place dedup drops
    repeated shots of one spot within one folder (a burst, a stationary car).
    """
    if not root.is_dir():
        raise FileNotFoundError(f"local source folder {root} does not exist or is not a folder")
    for dirpath, dirnames, filenames in os.walk(root / under):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        rel_folder = folder.relative_to(root).as_posix()
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in PHOTO_SUFFIXES:
                continue
            rel = (folder / name).relative_to(root).as_posix()
            sequence = f"{label}:{rel_folder}" if sequence_from == "folder" else None
            yield LocalFile(image_id=f"{label}:{rel}", path=folder / name, sequence_id=sequence)


def local_candidates(files: Iterator[LocalFile]) -> Iterator[Candidate]:
    """Photos as candidates whose position comes from their EXIF GPS."""
    for f in files:
        yield Candidate(image_id=f.image_id, path=str(f.path), sequence_id=f.sequence_id)
