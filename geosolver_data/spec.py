"""The dataset spec: the YAML file that says what to build.

Keys are validated strictly (unknown keys are errors) because a typo in a spec would
otherwise silently build a different dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

SPEC_ENV = "GEOSOLVER_SPEC"
SOURCE_TYPES = ("synthetic", "local", "mapillary", "commons", "urls", "osv5m")
REMOTE_TYPES = ("mapillary", "commons", "urls")  # fetched over HTTP by the async fetcher
# Settings that change how fast or politely a source is read, not what it yields: changing them
# keeps the ledger of finished images (see SourceSpec.content_key).
OPERATIONAL_KEYS = frozenset({"concurrency", "requests_per_second", "max_retries", "timeout_s", "user_agent"})


class SpecError(ValueError):
    """The spec is malformed; the message names the key and what is wrong."""


@dataclass(frozen=True)
class Region:
    name: str
    bbox: tuple[float, float, float, float]  # min_lon, min_lat, max_lon, max_lat

    def contains(self, lat: float, lon: float) -> bool:
        min_lon, min_lat, max_lon, max_lat = self.bbox
        return min_lat <= lat <= max_lat and min_lon <= lon <= max_lon


@dataclass(frozen=True)
class SourceSpec:
    type: str
    name: str = ""
    path: str = ""  # local: folder of photos; synthetic: where to write (default under GEOSOLVER_HOME)
    per_region: int = 300  # synthetic: scenes per region
    seed: int = 0
    exact_duplicate_share: float = 0.05  # synthetic
    near_duplicate_share: float = 0.05  # synthetic
    same_place_share: float = 0.05  # synthetic
    sequence_from: str = "folder"  # local: "folder" (a folder is a sequence) or "none"
    license: str = ""
    creator: str = ""
    # Remote sources (mapillary, commons, urls) and imports (urls, osv5m).
    url: str = ""  # commons: API endpoint (default Wikimedia Commons); mapillary: see MAPILLARY_API_URL
    images: str = ""  # osv5m: folder of <id>.jpg files or of zip archives holding them
    thumb_size: int = 1024  # mapillary: 256 | 1024 | 2048 (thumb_<size>_url); commons: iiurlwidth
    include_panoramas: bool = False  # mapillary: panoramas are skipped unless asked for
    tile_deg: float = 0.1  # mapillary/commons: side of the search tiles (Mapillary caps area at 0.01 deg²)
    page_limit: int = 0  # results per search call; 0 = the API's maximum (mapillary 2000, commons 500)
    watermark: bool = True  # mapillary: a refresh lists only images captured since the last complete run
    concurrency: int = 16  # open connections per host
    requests_per_second: float = 20.0  # per source, all hosts together; 0 = no limit
    max_retries: int = 5  # per request, on 429, 5xx, timeouts and dropped connections
    timeout_s: float = 30.0  # per request, connect to last byte
    user_agent: str = ""  # sent with every request; default names Geosolver and its version

    @property
    def label(self) -> str:
        return self.name or self.type

    def content_key(self) -> str:
        """A hash of the settings that decide what this source yields (not how fast): the ledger of
        finished images is kept per key, so changing e.g. thumb_size fetches again."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in OPERATIONAL_KEYS}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ImageSpec:
    max_side: int = 336
    jpeg_quality: int = 90
    max_pixels: int = 64_000_000
    max_file_bytes: int = 50_000_000
    # Downscaling filter: "box" averages each output pixel's area (OpenCV's INTER_AREA, what
    # img2dataset uses) at a third of "lanczos"'s cost; "lanczos" is a little sharper.
    resample: str = "box"


@dataclass(frozen=True)
class DedupSpec:
    phash_threshold: int = 4
    same_place_m: float = 5.0


@dataclass(frozen=True)
class BalanceSpec:
    resolution: int = 3
    alpha: float = 0.5
    cap: int = 50
    target_size: int = 1000
    split_resolution: int = 1
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    seed: int = 0


@dataclass(frozen=True)
class ShardSpec:
    target_mb: float = 64.0
    row_group_rows: int = 256
    compression: str = "zstd"


OBJECTIVES = ("soft_haversine", "infonce")
RESAMPLE_FILTERS = ("box", "bilinear", "bicubic", "lanczos")


@dataclass(frozen=True)
class ModelSpec:
    """Fine-tuning settings. `base` is a Hugging Face id, a local folder, or "tiny" (built from a
    config, for offline demos and tests)."""

    base: str = "geolocal/StreetCLIP"
    objectives: tuple[str, ...] = ("soft_haversine", "infonce")  # the first is the published model
    steps: int = 1000
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-5  # unfrozen vision blocks
    head_lr: float = 1e-3  # location encoder and image head
    weight_decay: float = 0.01
    warmup_steps: int = 50
    unfreeze_last_blocks: int = 2
    queue_size: int = 1024
    soft_target_km: float = 250.0
    checkpoint_every: int = 200
    seed: int = 0
    num_workers: int = 0
    nproc: int = 1  # processes (GPUs) for torchrun; 1 trains in-process
    gallery_resolution: int = 5
    top_k: int = 5
    eval_max_images: int = 0  # 0 = the whole test split


@dataclass(frozen=True)
class IndexSpec:
    """Embedding-index settings: the kind of FAISS index follows from the budget and the size."""

    memory_budget_gb: float = 1.0
    recall_target: float = 0.95  # recall@10 against exact search, on held-out queries
    neighbours: int = 10  # image neighbours that vote in `geosolver predict`


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    regions: tuple[Region, ...]
    sources: tuple[SourceSpec, ...]
    h3_resolutions: tuple[int, ...] = (1, 3, 5)
    image: ImageSpec = ImageSpec()
    dedup: DedupSpec = DedupSpec()
    balance: BalanceSpec = BalanceSpec()
    shards: ShardSpec = ShardSpec()
    model: ModelSpec = ModelSpec()
    index: IndexSpec = IndexSpec()
    workers: int = 0  # processes for image work; 0 = one per core
    refresh_cron: str = "0 3 * * 1"  # the scheduled refresh: Mondays 03:00 UTC

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise SpecError(f"region {name!r} is not in spec {self.name!r} (regions: {self.region_names})")

    @property
    def region_names(self) -> list[str]:
        return [r.name for r in self.regions]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A stable hash of the whole spec, recorded in manifests."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    return cls(**raw)


def _regions(raw: Any) -> tuple[Region, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError("regions: expected a non-empty list of {name, bbox}")
    regions = []
    for i, item in enumerate(raw):
        region = _build(Region, item, f"regions[{i}]")
        bbox = tuple(float(v) for v in region.bbox)
        if len(bbox) != 4:
            raise SpecError(f"regions[{i}].bbox: expected [min_lon, min_lat, max_lon, max_lat]")
        min_lon, min_lat, max_lon, max_lat = bbox
        if not (-180 <= min_lon < max_lon <= 180 and -90 <= min_lat < max_lat <= 90):
            raise SpecError(f"regions[{i}].bbox {list(bbox)}: not a valid [min_lon, min_lat, max_lon, max_lat]")
        if not str(region.name).replace("_", "").replace("-", "").isalnum():
            raise SpecError(f"regions[{i}].name {region.name!r}: use letters, digits, '-' and '_' only")
        regions.append(Region(name=str(region.name), bbox=bbox))  # type: ignore[arg-type]
    names = [r.name for r in regions]
    if len(set(names)) != len(names):
        raise SpecError(f"regions: names must be unique, got {names}")
    return tuple(regions)


def _sources(raw: Any) -> tuple[SourceSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError("sources: expected a non-empty list")
    sources = tuple(_build(SourceSpec, item, f"sources[{i}]") for i, item in enumerate(raw))
    for i, src in enumerate(sources):
        if src.type not in SOURCE_TYPES:
            raise SpecError(f"sources[{i}].type {src.type!r}: expected one of {list(SOURCE_TYPES)}")
        _check_source(src, f"sources[{i}]")
    labels = [s.label for s in sources]
    if len(set(labels)) != len(labels):
        raise SpecError(f"sources: give sources of the same type distinct 'name's, got {labels}")
    return sources


_NEEDS_PATH = {"local": "a folder of geotagged photos", "urls": "a CSV or Parquet file with url, lat, lon columns",
               "osv5m": "the OSV-5M metadata CSV (e.g. train.csv)"}


def _check_source(src: SourceSpec, where: str) -> None:
    if src.type in _NEEDS_PATH and not src.path:
        raise SpecError(f"{where}: a {src.type} source needs 'path' ({_NEEDS_PATH[src.type]})")
    if src.type == "osv5m" and not src.images:
        raise SpecError(f"{where}: an osv5m source needs 'images' (a folder of <id>.jpg files or of zip archives)")
    if src.sequence_from not in ("folder", "none"):
        raise SpecError(f"{where}.sequence_from: expected 'folder' or 'none'")
    if src.type == "mapillary" and src.thumb_size not in (256, 1024, 2048):
        raise SpecError(f"{where}.thumb_size: Mapillary serves 256, 1024 or 2048, got {src.thumb_size}")
    if not 0 < src.tile_deg <= 1:
        raise SpecError(f"{where}.tile_deg: expected 0 < tile_deg <= 1, got {src.tile_deg}")
    if src.type == "mapillary" and src.tile_deg ** 2 > 0.01 + 1e-12:
        raise SpecError(f"{where}.tile_deg: Mapillary rejects boxes over 0.01 deg², so at most 0.1")
    if src.page_limit < 0 or src.concurrency < 1 or src.max_retries < 0 or src.timeout_s <= 0:
        raise SpecError(f"{where}: need page_limit >= 0, concurrency >= 1, max_retries >= 0, timeout_s > 0")
    if src.requests_per_second < 0:
        raise SpecError(f"{where}.requests_per_second: expected >= 0 (0 = no limit)")


def _check(spec: DatasetSpec) -> None:
    res = spec.h3_resolutions
    if not res or any(not 0 <= r <= 15 for r in res) or list(res) != sorted(set(res)):
        raise SpecError(f"h3_resolutions {list(res)}: expected distinct increasing integers in 0..15")
    bal = spec.balance
    if bal.resolution not in res:
        raise SpecError(f"balance.resolution {bal.resolution} must be one of h3_resolutions {list(res)}")
    if not 0 <= bal.split_resolution < bal.resolution:
        raise SpecError("balance.split_resolution must be coarser (smaller) than balance.resolution")
    if set(bal.splits) - {"train", "val", "test"} or abs(sum(bal.splits.values()) - 1) > 1e-6:
        raise SpecError(f"balance.splits {bal.splits}: keys train/val/test, fractions summing to 1")
    if not 0 <= bal.alpha <= 1 or bal.cap < 1 or bal.target_size < 1:
        raise SpecError("balance: need 0 <= alpha <= 1, cap >= 1, target_size >= 1")
    if not 0 <= spec.dedup.phash_threshold <= 16:
        raise SpecError("dedup.phash_threshold must be in 0..16 (bits of a 64-bit hash)")
    if spec.image.max_side < 16 or not 1 <= spec.image.jpeg_quality <= 100:
        raise SpecError("image: need max_side >= 16 and 1 <= jpeg_quality <= 100")
    if spec.image.resample not in RESAMPLE_FILTERS:
        raise SpecError(f"image.resample {spec.image.resample!r}: expected one of {list(RESAMPLE_FILTERS)}")
    _check_model(spec.model)


def _check_model(model: ModelSpec) -> None:
    if not model.objectives or set(model.objectives) - set(OBJECTIVES):
        raise SpecError(f"model.objectives {list(model.objectives)}: choose from {list(OBJECTIVES)}")
    if model.steps < 1 or model.batch_size < 2 or model.grad_accum < 1 or model.nproc < 1:
        raise SpecError("model: need steps >= 1, batch_size >= 2, grad_accum >= 1, nproc >= 1")
    if not 0 <= model.gallery_resolution <= 15:
        raise SpecError("model.gallery_resolution must be an H3 resolution (0..15)")


def parse_spec(raw: Any) -> DatasetSpec:
    """Build a validated spec from parsed YAML."""
    if not isinstance(raw, dict):
        raise SpecError("the spec must be a YAML mapping")
    raw = dict(raw)
    try:
        raw["regions"] = _regions(raw.get("regions"))
        raw["sources"] = _sources(raw.get("sources"))
        for key, cls in (("image", ImageSpec), ("dedup", DedupSpec), ("balance", BalanceSpec),
                         ("shards", ShardSpec), ("model", ModelSpec), ("index", IndexSpec)):
            if key in raw:
                raw[key] = _build(cls, raw[key], key)
        if "model" in raw:
            raw["model"] = dataclasses.replace(raw["model"], objectives=tuple(raw["model"].objectives))
        if "h3_resolutions" in raw:
            raw["h3_resolutions"] = tuple(int(r) for r in raw["h3_resolutions"])
        spec = _build(DatasetSpec, raw, "spec")
    except TypeError as exc:
        raise SpecError(f"spec: {exc}") from exc
    if not spec.name or not str(spec.name).replace("_", "").replace("-", "").isalnum():
        raise SpecError(f"name {spec.name!r}: use letters, digits, '-' and '_' only")
    _check(spec)
    return spec


def default_spec_path() -> Path:
    return Path(str(resources.files("geosolver_data") / "specs" / "demo.yaml"))


def load_spec(path: str | os.PathLike[str] | None = None) -> DatasetSpec:
    """Load the spec at `path`, else `$GEOSOLVER_SPEC`, else the bundled offline demo."""
    path = path or os.environ.get(SPEC_ENV) or default_spec_path()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}") from exc
    try:
        return parse_spec(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise SpecError(f"spec {path} is not valid YAML: {exc}") from exc
