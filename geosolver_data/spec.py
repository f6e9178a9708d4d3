"""The dataset spec: the YAML file that says what to build.

Every key is declared here with its type and bounds (pydantic, strict: a string is never taken for
a number, unknown keys are errors), because a typo in a spec would otherwise silently build a
different dataset. Errors name the key path: `balance.cap: expected a positive integer, got 'fifty'`.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from geosolver_data.ingest.parts import IngestUnit, units
from geosolver_data.spec_errors import SpecError, describe_errors

__all__ = ["SPEC_ENV", "BalanceSpec", "DatasetSpec", "DedupSpec", "ImageSpec", "Region", "ShardSpec", "SourceSpec",
           "SpecError", "SpecSection", "default_spec_path", "load_spec", "parse_spec"]

SPEC_ENV = "GEOSOLVER_SPEC"
SourceType = Literal["synthetic", "local", "mapillary", "commons", "urls", "osv5m"]
REMOTE_TYPES = ("mapillary", "commons", "urls")  # fetched over HTTP by the async fetcher
# Settings that change how fast or politely a source is read, not what it yields: changing them
# keeps the ledger of finished images (see SourceSpec.content_key).
OPERATIONAL_KEYS = frozenset({"concurrency", "requests_per_second", "source_requests_per_second", "max_retries",
                              "timeout_s", "user_agent", "content_retries", "allow_private_addresses"})
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$", min_length=1, max_length=100)]
Share = Annotated[float, Field(ge=0, le=1)]
Resolution = Annotated[int, Field(ge=0, le=15)]


class SpecSection(BaseModel):
    """One section of the spec: frozen, strict types, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)



class Region(SpecSection):
    name: Name
    bbox: tuple[float, float, float, float]  # min_lon, min_lat, max_lon, max_lat

    @field_validator("bbox")
    @classmethod
    def _ordered(cls, bbox: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        min_lon, min_lat, max_lon, max_lat = bbox
        if not (-180 <= min_lon < max_lon <= 180 and -90 <= min_lat < max_lat <= 90):
            raise ValueError(f"{list(bbox)} is not a valid [min_lon, min_lat, max_lon, max_lat] "
                             "(longitudes in -180..180, latitudes in -90..90, min < max)")
        return bbox

    def contains(self, lat: float, lon: float) -> bool:
        min_lon, min_lat, max_lon, max_lat = self.bbox
        return min_lat <= lat <= max_lat and min_lon <= lon <= max_lon


_NEEDS_PATH = {"local": "a folder of geotagged photos", "urls": "a CSV or Parquet file with url, lat, lon columns",
               "osv5m": "the OSV-5M metadata CSV (e.g. train.csv)"}


class SourceSpec(SpecSection):
    type: SourceType
    name: Annotated[str, Field(pattern=r"^([A-Za-z0-9_-]+)?$", max_length=100)] = ""
    path: str = ""  # local: folder of photos; synthetic: where to write (default under GEOSOLVER_HOME)
    per_region: Annotated[int, Field(ge=1)] = 300  # synthetic: scenes per region
    seed: Annotated[int, Field(ge=0)] = 0
    exact_duplicate_share: Share = 0.05  # synthetic
    near_duplicate_share: Share = 0.05  # synthetic
    same_place_share: Share = 0.05  # synthetic
    sequence_from: Literal["folder", "none"] = "folder"  # local: a folder is a sequence, or none
    license: str = ""
    creator: str = ""
    # Remote sources (mapillary, commons, urls) and imports (urls, osv5m).
    url: str = ""  # commons: API endpoint (default Wikimedia Commons); mapillary: see MAPILLARY_API_URL
    images: str = ""  # osv5m: folder of <id>.jpg files or of zip archives holding them
    thumb_size: Annotated[int, Field(ge=16)] = 1024  # mapillary: 256 | 1024 | 2048; commons: iiurlwidth
    include_panoramas: bool = False  # mapillary: panoramas are skipped unless asked for
    tile_deg: Annotated[float, Field(gt=0, le=1)] = 0.1  # mapillary/commons: side of the search tiles
    page_limit: Annotated[int, Field(ge=0)] = 0  # results per search call; 0 = the API's maximum
    watermark: bool = True  # mapillary: a refresh lists only images captured since the last complete run
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 16  # open connections per host
    requests_per_second: Annotated[float, Field(ge=0)] = 20.0  # per host; 0 = no limit
    source_requests_per_second: Annotated[float, Field(ge=0)] = 0.0  # all hosts together; 0 = no cap
    max_retries: Annotated[int, Field(ge=0)] = 5  # per request, on 429, 5xx, timeouts and dropped connections
    timeout_s: Annotated[float, Field(gt=0)] = 30.0  # per request, connect to last byte
    user_agent: str = ""  # sent with every request; default names Geosolver and its version
    # Runs after the first that try again an image whose bytes came back unusable (HTML with status
    # 200, cut short, undecodable): CDNs and captive portals do that for a while. Remote only.
    content_retries: Annotated[int, Field(ge=0)] = 2
    # Fetch from loopback and private-range addresses (a server on this machine or a LAN). Off by default:
    # a listed URL or a redirect that resolves there is refused (`private_address`, `unsafe_redirect`).
    # Link-local addresses, the cloud metadata endpoint among them, are refused either way.
    allow_private_addresses: bool = False

    @model_validator(mode="after")
    def _per_type(self) -> SourceSpec:
        if self.type in _NEEDS_PATH and not self.path:
            raise ValueError(f"a {self.type} source needs 'path' ({_NEEDS_PATH[self.type]})")
        if self.type == "osv5m" and not self.images:
            raise ValueError("an osv5m source needs 'images' (a folder of <id>.jpg files or of zip archives)")
        if self.type == "mapillary" and self.thumb_size not in (256, 1024, 2048):
            raise ValueError(f"thumb_size: Mapillary serves 256, 1024 or 2048, got {self.thumb_size}")
        if self.type == "mapillary" and self.tile_deg ** 2 > 0.01 + 1e-12:
            raise ValueError(f"tile_deg: Mapillary rejects boxes over 0.01 deg², so at most 0.1, got {self.tile_deg}")
        return self

    @property
    def label(self) -> str:
        return self.name or self.type

    @property
    def remote(self) -> bool:
        return self.type in REMOTE_TYPES

    def content_key(self) -> str:
        """A hash of the settings that decide what this source yields (not how fast): the ledger of
        finished images is kept per key, so changing e.g. thumb_size fetches again."""
        fields = {k: v for k, v in self.model_dump().items() if k not in OPERATIONAL_KEYS}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


class ImageSpec(SpecSection):
    # What ingest stores: by default the short side at the model's input size (StreetCLIP: 336), so the
    # model's own resize and centre crop see every pixel it was pretrained on; never upscaled. The long
    # side is capped at max_side (a 4:3 photo becomes 448x336; only panoramas wider than 2:1 end with a
    # short side under min_side). `fit: long_side` stores the long side at max_side instead (the
    # behaviour before: max_side: 336 gives 336x252, which the model then has to upsample).
    fit: Literal["short_side", "long_side"] = "short_side"
    min_side: Annotated[int, Field(ge=16)] = 336
    max_side: Annotated[int, Field(ge=16)] = 672
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 90
    max_pixels: Annotated[int, Field(gt=0)] = 64_000_000
    max_file_bytes: Annotated[int, Field(gt=0)] = 50_000_000
    # Images a model cannot use, rejected from the header before decoding: a short side under min_source_side
    # (a 1x1 tracking pixel, a thumbnail strip), or a long/short ratio over max_aspect (a 6000x20 banner would
    # be stored at 672x3). 4 lets equirectangular panoramas (2:1) and cinema frames (2.4:1) through.
    min_source_side: Annotated[int, Field(ge=1)] = 64
    max_aspect: Annotated[float, Field(ge=1)] = 4.0
    # Downscaling filter: "box" averages each output pixel's area (OpenCV's INTER_AREA, what
    # img2dataset uses) at a third of "lanczos"'s cost; "lanczos" is a little sharper.
    resample: Literal["box", "bilinear", "bicubic", "lanczos"] = "box"

    @model_validator(mode="after")
    def _long_at_least_short(self) -> ImageSpec:
        if self.fit == "short_side" and self.max_side < self.min_side:
            raise ValueError(f"max_side ({self.max_side}) must be at least min_side ({self.min_side})")
        return self

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """The stored size of a width x height image: see `fit`; never larger than the original."""
        scale = min(1.0, self.max_side / max(width, height))
        if self.fit == "short_side":
            scale = min(scale, self.min_side / min(width, height))
        return max(1, round(width * scale)), max(1, round(height * scale))


class DedupSpec(SpecSection):
    phash_threshold: Annotated[int, Field(ge=0, le=16)] = 4  # bits of a 64-bit hash
    same_place_m: Annotated[float, Field(gt=0)] = 5.0


class BalanceSpec(SpecSection):
    resolution: Resolution = 3
    alpha: Share = 0.5
    cap: Annotated[int, Field(ge=1)] = 50
    target_size: Annotated[int, Field(ge=1)] = 1000
    # H3 resolution of the split blocks: a block's images are all in one split. Coarse (1: ~600,000 km²) holds
    # out whole regions, for region-generalisation studies; fine (6: ~36 km², finer than `resolution` is
    # allowed) puts a test photo's neighbourhood in training, as OSV-5M does, and the 1 km buffer between
    # splits is what keeps test photos apart.
    split_resolution: Resolution = 6
    splits: dict[Literal["train", "val", "test"], Share] = Field(
        default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    seed: Annotated[int, Field(ge=0)] = 0

    @field_validator("splits")
    @classmethod
    def _sum_to_one(cls, splits: dict[str, float]) -> dict[str, float]:
        if abs(sum(splits.values()) - 1) > 1e-6:
            raise ValueError(f"fractions must sum to 1, got {sum(splits.values()):g} from {splits}")
        missing = [s for s in ("train", "val", "test") if s not in splits]
        if missing:  # an evaluation with no test rows measures nothing: leaving one out must be said
            raise ValueError(f"{', '.join(missing)} missing from {splits}: give each a share, or write it with "
                             "0 to build without it (its evaluation is then skipped)")
        return splits


class ShardSpec(SpecSection):
    target_mb: Annotated[float, Field(gt=0)] = 64.0
    row_group_rows: Annotated[int, Field(ge=1)] = 256
    compression: Literal["zstd", "snappy", "gzip", "brotli", "lz4", "none"] = "zstd"


class DatasetSpec(SpecSection):
    name: Name
    regions: Annotated[tuple[Region, ...], Field(min_length=1)]
    sources: Annotated[tuple[SourceSpec, ...], Field(min_length=1)]
    h3_resolutions: Annotated[tuple[Resolution, ...], Field(min_length=1)] = (1, 3, 5)
    image: ImageSpec = ImageSpec()
    dedup: DedupSpec = DedupSpec()
    balance: BalanceSpec = BalanceSpec()
    shards: ShardSpec = ShardSpec()
    # Owned by the model package (geosolver_model.config.Spec types them); kept as given here, so
    # the data library reads a spec without knowing the model's settings.
    model: dict[str, Any] = Field(default_factory=dict)
    index: dict[str, Any] = Field(default_factory=dict)
    locate: dict[str, Any] = Field(default_factory=dict)
    workers: Annotated[int, Field(ge=0, le=512)] = 0  # processes for image work; 0 = one per core
    # Ingest runs per region (ingest/parts.py): >1 lets a backfill spread one region over machines.
    sub_partitions: Annotated[int, Field(ge=1, le=4096)] = 1
    refresh_cron: str = "0 3 * * 1"  # the scheduled refresh: Mondays 03:00 UTC

    @field_validator("refresh_cron")
    @classmethod
    def _five_fields(cls, cron: str) -> str:
        if len(cron.split()) != 5:
            raise ValueError(f"expected a cron expression of five fields (e.g. '0 3 * * 1'), got {cron!r}")
        return cron

    @field_validator("regions")
    @classmethod
    def _unique_regions(cls, regions: tuple[Region, ...]) -> tuple[Region, ...]:
        names = [r.name for r in regions]
        if len(set(names)) != len(names):
            raise ValueError(f"names must be unique, got {names}")
        return regions

    @field_validator("sources")
    @classmethod
    def _unique_labels(cls, sources: tuple[SourceSpec, ...]) -> tuple[SourceSpec, ...]:
        labels = [s.label for s in sources]
        if len(set(labels)) != len(labels):
            raise ValueError(f"give sources of the same type distinct 'name's, got {labels}")
        return sources

    @field_validator("h3_resolutions")
    @classmethod
    def _increasing(cls, res: tuple[int, ...]) -> tuple[int, ...]:
        if list(res) != sorted(set(res)):
            raise ValueError(f"expected distinct increasing integers in 0..15, got {list(res)}")
        return res

    @model_validator(mode="after")
    def _balance_at_a_configured_resolution(self) -> DatasetSpec:
        if self.balance.resolution not in self.h3_resolutions:
            raise ValueError(f"balance.resolution {self.balance.resolution} must be one of h3_resolutions "
                             f"{list(self.h3_resolutions)}")
        return self

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise SpecError(f"region {name!r} is not in spec {self.name!r} (regions: {self.region_names})")

    @property
    def region_names(self) -> list[str]:
        return [r.name for r in self.regions]

    def ingest_unit(self, region: str, part: int = 0) -> IngestUnit:
        """One region's ingest, or one of its sub-partitions; a clear error for an unknown one."""
        self.region(region)
        try:
            return IngestUnit(region, part, self.sub_partitions)
        except ValueError as exc:
            raise SpecError(f"{exc} (sub_partitions: {self.sub_partitions})") from None

    def ingest_units(self) -> list[IngestUnit]:
        """Every region's ingest runs: one per region, or `sub_partitions` per region."""
        return units(self.region_names, self.sub_partitions)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """A stable hash of the whole spec, recorded in manifests."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def parse_spec(raw: Any, cls: type[DatasetSpec] = DatasetSpec) -> DatasetSpec:
    """Build a validated spec from parsed YAML (or any JSON-like mapping); `cls` may be a richer
    spec class (geosolver_model.config.Spec types the model and index sections)."""
    if not isinstance(raw, dict):
        raise SpecError(f"the spec must be a YAML mapping of keys to values, got {type(raw).__name__}")
    try:
        # Through JSON so YAML lists are taken for tuples while scalars stay strict ('5' is no number).
        text = json.dumps(raw)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"the spec holds a value YAML cannot give as plain data: {exc}") from exc
    try:
        return cls.model_validate_json(text)
    except ValidationError as exc:
        raise SpecError(describe_errors(exc, cls)) from None


MAX_SPEC_NODES = 100_000  # a spec is a few hundred values; aliases may not expand it past this


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping (YAML says keys are unique;
    PyYAML would silently keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int], open_: set[int]) -> int:
    """Nodes the document has once every alias is expanded (what json.dumps would write), counted in
    time linear in the distinct nodes; a node that contains itself is refused."""
    if id(node) in memo:
        return memo[id(node)]
    if id(node) in open_:
        raise yaml.YAMLError("an alias refers to a node that contains it (a recursive structure)")
    open_.add(id(node))
    children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else (
        node.value if isinstance(node, yaml.SequenceNode) else [])
    size = 1
    for child in children:
        size += _expanded_size(child, memo, open_)
        if size > MAX_SPEC_NODES:
            break
    open_.discard(id(node))
    memo[id(node)] = size
    return size


def strict_yaml(text: str) -> object:
    """YAML as plain data, refusing duplicate keys and aliases that expand past MAX_SPEC_NODES (a
    10-line "billion laughs" spec took 93 s and 6 GB before failing)."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, set()) > MAX_SPEC_NODES:
            raise yaml.YAMLError(f"its aliases expand to more than {MAX_SPEC_NODES:,} values")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def default_spec_path() -> Path:
    return Path(str(resources.files("geosolver_data") / "specs" / "demo.yaml"))


def load_spec(path: str | os.PathLike[str] | None = None, cls: type[DatasetSpec] = DatasetSpec) -> DatasetSpec:
    """Load the spec at `path`, else `$GEOSOLVER_SPEC`, else the bundled offline demo."""
    path = path or os.environ.get(SPEC_ENV) or default_spec_path()
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"spec {path} is not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})") \
            from None
    try:
        raw = strict_yaml(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"spec {path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    try:
        return parse_spec(raw, cls)
    except SpecError as exc:
        raise SpecError(f"spec {path}: {exc}") from None
