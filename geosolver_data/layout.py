"""Where every artifact lives under GEOSOLVER_HOME, and how files are published.

Publishing is always write-to-a-temporary-name then rename, so a reader (or a rerun after a
crash) never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geosolver_data.mirror import cache_root, is_remote

HOME_ENV = "GEOSOLVER_HOME"


def home_setting(home: str | os.PathLike[str] | None = None) -> str:
    """`home`, else `$GEOSOLVER_HOME`, else `.geosolver` (in the working directory)."""
    return str(home or os.environ.get(HOME_ENV) or ".geosolver")


def geosolver_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The local folder the stages work in: the home itself, or for a remote home (`s3://…`) its
    working copy under $GEOSOLVER_CACHE (see mirror.py)."""
    setting = home_setting(home)
    if is_remote(setting):
        return cache_root(setting)
    return Path(setting).absolute()


@dataclass(frozen=True)
class RegionFiles:
    """What one region/source ingest publishes."""

    raw: Path  # raw_images rows
    rejects: Path  # rejects, each with its reason and whether it is final
    listing: Path  # the ids the last run listed, for the accounting check


@dataclass(frozen=True)
class DatasetLayout:
    """Paths of one dataset's work areas and published versions."""

    home: Path
    name: str

    @property
    def work(self) -> Path:
        return self.home / "work" / self.name

    def raw_images(self, region: str, source: str) -> Path:
        return self.work / "raw_images" / region / f"{source}.parquet"

    def raw_rejects(self, region: str, source: str) -> Path:
        return self.work / "raw_rejects" / region / f"{source}.parquet"

    def listing(self, region: str, source: str) -> Path:
        return self.work / "listed" / region / f"{source}.parquet"

    def region_files(self, region: str, source: str) -> RegionFiles:
        return RegionFiles(self.raw_images(region, source), self.raw_rejects(region, source),
                           self.listing(region, source))

    def ledger(self, region: str, source: str, key: str) -> Path:
        """Finished-image parts of one region/source ingest; `key` changes when the settings that
        decide its content change, which starts a fresh ledger."""
        return self.work / "ledger" / region / f"{source}-{key}"

    @property
    def synthetic_root(self) -> Path:
        return self.home / "synthetic" / self.name

    @property
    def dedup_kept(self) -> Path:
        return self.work / "deduplicated" / "kept.parquet"

    @property
    def dedup_dropped(self) -> Path:
        return self.work / "deduplicated" / "dropped.parquet"

    @property
    def geocells(self) -> Path:
        return self.work / "geocells" / "geocells.parquet"

    @property
    def balanced(self) -> Path:
        return self.work / "balanced" / "balanced.parquet"

    @property
    def balance_report(self) -> Path:
        return self.work / "balanced" / "report.json"

    @property
    def versions(self) -> Path:
        return self.home / "datasets" / self.name

    def version_dir(self, version: str) -> Path:
        return self.versions / version

    @property
    def latest_pointer(self) -> Path:
        return self.versions / "LATEST"

    def latest_version(self) -> str | None:
        try:
            return self.latest_pointer.read_text().strip() or None
        except FileNotFoundError:
            return None

    @property
    def catalog(self) -> Path:
        return self.home / "catalog.duckdb"


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; artifacts are meant to be shared
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(target: Path, payload: Any) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def publish_dir(staging: Path, final: Path) -> bool:
    """Move a finished staging folder to `final`. Returns False if `final` already existed.

    Versions are content hashes, so an existing `final` holds the same content: the staging
    copy is dropped and the published one is left untouched (artifacts are immutable).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(staging)
        return False
    try:
        os.rename(staging, final)
    except OSError:
        if final.exists():  # another run published the same version first
            shutil.rmtree(staging)
            return False
        raise
    return True


def staging_dir(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
    os.chmod(path, 0o755)  # mkdtemp makes 0700
    return path
