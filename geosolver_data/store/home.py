"""Where everything lives under GEOSOLVER_HOME: every path of every artifact kind is spelled here."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from geosolver_data.parts import IngestUnit
from geosolver_data.store.artifact import Shelf
from geosolver_data.store.manifests import DatasetManifest, EvalManifest, IndexManifest, ModelManifest
from geosolver_data.store.mirror import Mirror, cache_root, is_remote

if TYPE_CHECKING:
    from geosolver_data.spec import SourceSpec

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


def working_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The folder to read artifacts from: the home, or a remote home's working copy brought up to
    date first (for commands run outside Dagster, such as `geosolver show` and `geosolver predict`)."""
    setting = home_setting(home)
    if is_remote(setting):
        Mirror(setting).pull()
    return geosolver_home(setting)


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

    REGION_KINDS = ("raw_images", "raw_rejects", "listed", "ledger")  # the work folders kept per region

    # `region` below is a region's name, or a sub-partition's folder (`IngestUnit.folder`,
    # `<region>/part-<k>-of-<n>`): each ingest unit keeps its own files.

    def region_dirs(self, region: str) -> list[Path]:
        """Every work folder one region's (or part's) ingest reads and writes, and nothing of another."""
        return [self.work / kind / region for kind in self.REGION_KINDS]

    def ingest_reads(self, unit: IngestUnit, sources: Sequence[SourceSpec]) -> list[str]:
        """What an ingest of one region (or part) reads, relative to the home, and nothing of the other
        regions or parts: its work folders, and the region's demo photos of the synthetic sources that
        write them under the home, and the central directories of Hub archives read before (any region's)."""
        photos = [self.synthetic_photos(s.label) / unit.region for s in sources if s.type == "synthetic" and not s.path]
        directories = [self.archive_directories] if any(s.hub for s in sources) else []
        return [f.relative_to(self.home).as_posix() for f in (*self.region_dirs(unit.folder), *photos, *directories)]

    def ingest_only(self) -> list[str]:
        """What only ingest reads (ledgers, listings, demo photos), relative to the home: the steps
        after ingest never need it, so a fresh pod of theirs does not fetch it."""
        return [f.relative_to(self.home).as_posix()
                for f in (self.work / "ledger", self.work / "listed", self.synthetic_root)]

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
    def archive_directories(self) -> Path:
        """The central directories of Hub archives already read (hub.py), by content hash: any region,
        dataset or refresh on this home reads each archive's directory once."""
        return self.home / "cache" / "archive-directories"

    @property
    def synthetic_root(self) -> Path:
        return self.home / "synthetic" / self.name

    def synthetic_photos(self, source: str) -> Path:
        """Where a `synthetic` source without a `path` writes its demo photos, one folder per region."""
        return self.synthetic_root / source

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
    def shelf(self) -> Shelf[DatasetManifest]:
        """The published versions: datasets/<name>/<version>/, datasets/<name>/LATEST."""
        return Shelf("dataset", self.home / "datasets" / self.name, produced_by="dataset_shards")

    @property
    def versions(self) -> Path:
        return self.shelf.root

    def version_dir(self, version: str) -> Path:
        return self.shelf.path(version)

    def latest_version(self) -> str | None:
        return self.shelf.latest_version()

    @property
    def catalog(self) -> Path:
        return self.home / "catalog.duckdb"


@dataclass(frozen=True)
class Home:
    """Every kind of artifact under one GEOSOLVER_HOME (its local working copy for a remote home)."""

    root: Path

    def dataset(self, name: str) -> DatasetLayout:
        return DatasetLayout(self.root, name)

    def datasets(self, name: str) -> Shelf[DatasetManifest]:
        return self.dataset(name).shelf

    @property
    def models(self) -> Shelf[ModelManifest]:
        return Shelf("model", self.root / "models", produced_by="finetuned_model")

    @property
    def training_runs(self) -> Path:
        """Checkpoints of models being trained, kept until the version is published (resume)."""
        return self.root / "models" / ".runs"

    @property
    def evals(self) -> Shelf[EvalManifest]:
        return Shelf("eval", self.root / "evals", produced_by="geolocation_eval")

    def indexes(self, series: str) -> Shelf[IndexManifest]:
        """Index versions share indexes/; each series (image, gps) has its own LATEST_<series>."""
        asset = {"image": "embedding_index", "gps": "gps_gallery_index"}.get(series, "the index assets")
        return Shelf("index", self.root / "indexes", pointer=f"LATEST_{series}", produced_by=asset)

    def embeddings(self, model_version: str) -> Path:
        return self.root / "embeddings" / model_version

    @property
    def benchmarks(self) -> Path:
        """Public test sets the user puts here (never downloaded): im2gps3k/, yfcc4k/, osv5m/."""
        return self.root / "benchmarks"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.duckdb"
