"""What each kind of artifact's manifest.json holds, as types: parsed once, when a version is read
(Shelf.get), so readers use attributes (`index.info.latency_ms.p50`) instead of dict look-ups, and a
manifest that does not hold what its kind needs is refused as damaged in one line.

Unknown keys are kept (`extra="allow"`): a manifest written by a newer version still reads, and keys
a reader does not need are not declared here."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from geosolver_data.schemas import split_name


class Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Manifest(Record):
    """What every artifact's manifest holds: its version and every file's sha256 and size."""

    version: str
    created_at: str = ""
    files: dict[str, str] = Field(default_factory=dict)
    file_bytes: dict[str, int] = Field(default_factory=dict)


class ShardEntry(Record):
    path: str  # relative to the version folder
    split: str
    rows: int
    bytes: int = 0
    sha256: str = ""


class BalanceStats(Record):
    cells: int
    images: int
    gini: float
    entropy: float
    top1pct_share: float


class BalanceReport(Record):
    before: BalanceStats
    after: BalanceStats
    splits: dict = Field(default_factory=dict)  # per split: images, cells, blocks


class DatasetManifest(Manifest):
    dataset: str
    rows: int
    h3_resolutions: list[int]
    splits: dict[str, int]
    shards: list[ShardEntry]
    balance: BalanceReport
    dedup_dropped: dict[str, int] = Field(default_factory=dict)
    rejects: dict[str, int] = Field(default_factory=dict)
    spec: dict = Field(default_factory=dict)  # the spec it was built from, every default filled in
    spec_fingerprint: str = ""

    def shard_paths(self, folder: Path, split: str | None = None) -> list[Path]:
        """The version's shard files (of one split, when given), in manifest order."""
        return [folder / s.path for s in self.shards if split is None or split_name(s.split) == split]


class DatasetRef(Record):
    name: str
    version: str


class TrainingRun(Record):
    final_loss: float
    samples_per_s: float
    curve: list[dict] = Field(default_factory=list)  # {step, loss, lr, val_median_km?} per step


class ModelManifest(Manifest):
    dataset: DatasetRef
    base: str
    objectives: dict[str, TrainingRun]
    base_revision: str = ""  # the revision the spec asked for (model.revision)
    base_commit: str | None = None  # the Hub commit it resolved to; None: a local folder or a config
    published_objective: str = ""
    model_spec: dict = Field(default_factory=dict)
    code_version: str = ""


class EvalManifest(Manifest):
    model_version: str
    dataset: DatasetRef
    dataset_test_median_km: float | None = None
    test_sets: dict[str, dict] = Field(default_factory=dict)


class IndexFacts(Record):
    key: str
    dim: int
    count: int
    search_param: str | None = None
    search_value: int | float | None = None  # an int (nprobe, efSearch) stays an int


class Latency(Record):
    p50: float
    p99: float


class IndexManifest(Manifest):
    kind: str
    model_version: str
    dataset: DatasetRef
    index: IndexFacts
    recall_at_10: float
    latency_ms: Latency


# The manifest type of each artifact kind (Shelf.kind).
SCHEMAS: dict[str, type[Manifest]] = {"dataset": DatasetManifest, "model": ModelManifest, "eval": EvalManifest,
                                      "index": IndexManifest}


def read_dataset_manifest(folder: Path) -> DatasetManifest:
    """A dataset version folder's manifest, typed (for readers handed a folder rather than an Artifact)."""
    return DatasetManifest.model_validate(json.loads((folder / "manifest.json").read_text()))
