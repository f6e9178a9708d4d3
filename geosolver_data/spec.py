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

from geosolver_data.parts import IngestUnit, units
from geosolver_data.schemas import SPLITS, split_name
from geosolver_data.spec_errors import SpecError, describe_errors

__all__ = ["SPEC_ENV", "BalanceSpec", "DatasetSpec", "DedupSpec", "ImageSpec", "Region", "ShardSpec", "SourceSpec",
           "SpecError", "SpecSection", "default_spec_path", "load_spec", "parse_spec"]

SPEC_ENV = "GEOSOLVER_SPEC"
SourceType = Literal["synthetic", "local", "mapillary", "commons", "urls", "osv5m"]
REMOTE_TYPES = ("mapillary", "commons", "urls")  # fetched over HTTP by the async fetcher
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$", min_length=1, max_length=100)]
Share = Annotated[float, Field(ge=0, le=1)]
Resolution = Annotated[int, Field(ge=0, le=15)]


class SpecSection(BaseModel):
    """One section of the spec: frozen, strict types, unknown keys refused. Each field's docstring is its
    description, which the configuration reference (docs/reference/configuration.md) is generated from."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True)


class Region(SpecSection):
    name: Name
    """the region's name, an ingest partition (letters, digits, `-`, `_`)"""
    bbox: tuple[float, float, float, float]
    """`[min_lon, min_lat, max_lon, max_lat]` in degrees; a photo belongs to the first region that contains it"""

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
               "osv5m": "the OSV-5M metadata CSV (e.g. train.csv), or 'hub' to read it from the Hub"}


class HttpSettings(SpecSection):
    """How a source's hosts are fetched: declared once, here, for the spec's `sources[]` keys and the
    fetcher's policy (ingest/fetch.py's FetchPolicy extends it with the fetcher's own limits)."""

    concurrency: Annotated[int, Field(ge=1, le=1024)] = 16
    """open connections per host"""
    requests_per_second: Annotated[float, Field(ge=0)] = 20.0
    """per host (each host the source fetches from gets this budget); 0 = no limit"""
    source_requests_per_second: Annotated[float, Field(ge=0)] = 0.0
    """a cap for the whole source, every host together; 0 = none beyond the per-host budget"""
    max_retries: Annotated[int, Field(ge=0)] = 5
    """retries per request on 429, 408, 5xx, timeouts, dropped connections"""
    timeout_s: Annotated[float, Field(gt=0)] = 30.0
    """per request, connect to last byte"""
    user_agent: str = ""
    """sent with every request; Commons asks for contact details"""
    opt_out: tuple[str, ...] = ("noai", "noimageai", "noindex", "noimageindex")
    """`X-Robots-Tag` directives that refuse a photo, as img2dataset refuses them by default: the photo is rejected
    `opted_out` (final) and its body is never read. A directive for another user agent (`otherbot: noai`) does not
    apply; `[]` turns the check off
    """
    robots_txt: bool = False
    """also obey each photo host's robots.txt for our user agent's product token (`Geosolver`, or the first word of
    `user_agent`): fetched once per host by each worker process, through the same politeness; a disallowed photo is
    rejected `robots_disallowed` (final); a robots.txt that cannot be fetched (5xx, timeout) holds the host's photos
    back as `robots_unavailable`, tried again by the next run; a 4xx (none published) allows everything
    """
    allow_private_addresses: bool = False
    """fetch from loopback and private-range addresses (127/8, 10/8, 172.16/12, 192.168/16, fc00::/7): a server on this
    machine or a LAN. Link-local addresses, the cloud metadata endpoint among them, are refused either way
    """


# Settings that change how fast or politely a source is read, not what it yields: changing them
# keeps the ledger of finished images (see SourceSpec.content_key).
OPERATIONAL_KEYS = frozenset({*HttpSettings.model_fields, "content_retries"} - {"opt_out", "robots_txt"})
# Content settings added after ledgers existed: at their default they leave a source's content key as it
# was before them, so an upgrade fetches nothing again (photos stored earlier were not checked by them).
KEYED_WHEN_SET = frozenset({"opt_out", "robots_txt", "hub", "revision", "split"})


class SourceSpec(HttpSettings):
    type: SourceType
    """`synthetic`, `local`, `mapillary`, `commons`, `urls` or `osv5m` (see Sources)"""
    name: Annotated[str, Field(pattern=r"^([A-Za-z0-9_-]+)?$", max_length=100)] = ""
    """label used in `image_id` and `source`; needed when two sources share a type"""
    path: str = ""
    """`local`: the folder of photos. `urls`: the CSV/Parquet list. `osv5m`: the metadata CSV. `synthetic`: where to
    write (default `$GEOSOLVER_HOME/synthetic/<name>/<label>`)
    """
    per_region: Annotated[int, Field(ge=1)] = 300
    """`synthetic`: photos per region (before planted duplicates)"""
    seed: Annotated[int, Field(ge=0)] = 0
    """`synthetic`: generation seed"""
    exact_duplicate_share: Share = 0.05
    """`synthetic`: share of photos planted again as exact copies"""
    near_duplicate_share: Share = 0.05
    """`synthetic`: share of photos planted again re-encoded, rescaled and re-lit"""
    same_place_share: Share = 0.05
    """`synthetic`: share of frames taken again 1–3 m away (a car standing still)"""
    sequence_from: Literal["folder", "none"] = "folder"
    """`local`: `folder` treats each folder as a sequence (for same-place dedup), `none` disables it"""
    license: str = ""
    """a licence recorded on every row of the source (where the source gives none per image)"""
    creator: str = ""
    """a creator recorded on every row of the source (where the source gives none per image)"""
    url: str = ""
    """`commons`: the `api.php` endpoint"""
    images: str = ""
    """`osv5m`: folder of `<id>.jpg` files or of the zip archives holding them (not with `hub`)"""
    hub: Annotated[str, Field(pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)?$")] = ""
    """`osv5m`: a Hugging Face dataset repo in OSV-5M's layout (`osv5m/osv5m`) read straight from the Hub: `<split>.csv`
    through huggingface_hub's cache, each archive's central directory once, then only the photos of the region (or
    part) being ingested, by HTTP range requests. `HF_TOKEN` is sent to the Hub for a private repo
    """
    revision: Annotated[str, Field(min_length=1, max_length=200)] = "main"
    """`osv5m` with `hub`: branch, tag or commit; the commit it points at when a run starts is the one read"""
    split: Literal["train", "test"] = "train"
    """`osv5m` with `hub`: which metadata CSV and archives (`images/<split>/*.zip`)"""
    thumb_size: Annotated[int, Field(ge=16)] = 1024
    """`mapillary`: 256, 1024 or 2048; `commons`: thumbnail width"""
    include_panoramas: bool = False
    """`mapillary`: keep 360° panoramas"""
    tile_deg: Annotated[float, Field(gt=0, le=1)] = 0.1
    """`mapillary`/`commons`: side of the search tiles in degrees (Mapillary: at most 0.1)"""
    page_limit: Annotated[int, Field(ge=0)] = 0
    """results per search call; 0 = the API's maximum (Mapillary 2000, Commons 500)"""
    watermark: bool = True
    """`mapillary`: a refresh searches only from the latest capture time already ingested"""
    content_retries: Annotated[int, Field(ge=0)] = 2
    """later runs that try again an image whose bytes came back unusable from a remote host (HTML with status 200, cut
    short, undecodable) before its reject is final
    """
    @model_validator(mode="after")
    def _per_type(self) -> SourceSpec:
        if self.type in _NEEDS_PATH and not self.path and not (self.type == "osv5m" and self.hub):
            raise ValueError(f"a {self.type} source needs 'path' ({_NEEDS_PATH[self.type]})")
        if self.hub and self.type != "osv5m":
            raise ValueError("'hub' is read by osv5m sources only")
        if self.type == "osv5m" and self.hub and (self.images or self.path):
            raise ValueError("an osv5m source reads either 'hub' or 'path' and 'images', not both")
        if self.type == "osv5m" and not self.hub and not self.images:
            raise ValueError("an osv5m source needs 'images' (a folder of <id>.jpg files or of zip archives) "
                             "or 'hub' (a dataset repo such as osv5m/osv5m)")
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
        return self.type in REMOTE_TYPES or bool(self.hub)

    def content_key(self) -> str:
        """A hash of the settings that decide what this source yields (not how fast): the ledger of
        finished images is kept per key, so changing e.g. thumb_size fetches again."""
        defaults = SourceSpec.model_fields
        fields = {k: v for k, v in self.model_dump().items() if k not in OPERATIONAL_KEYS
                  and not (k in KEYED_WHEN_SET and v == defaults[k].default)}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


class ImageSpec(SpecSection):
    fit: Literal["short_side", "long_side"] = "short_side"
    """`short_side`: the short side is stored at `min_side`, the long side capped at `max_side` (a 1024×768 photo
    becomes 448×336); `long_side`: the long side at `max_side` (the behaviour before; `max_side: 336` gives 336×252,
    which a 336-px model must upsample). Never upscaled
    """
    min_side: Annotated[int, Field(ge=16)] = 336
    """the stored short side: the model's input size (StreetCLIP: 336)"""
    max_side: Annotated[int, Field(ge=16)] = 672
    """cap on the long side (only panoramas wider than 2:1 end with a short side under `min_side`)"""
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 90
    """re-encode quality"""
    max_pixels: Annotated[int, Field(gt=0)] = 64_000_000
    """decompression-bomb guard, checked from the header before decoding"""
    max_file_bytes: Annotated[int, Field(gt=0)] = 50_000_000
    """larger files are rejected unread"""
    min_source_side: Annotated[int, Field(ge=1)] = 64
    """a photo whose short side is smaller is rejected (`too_small`, from the header): a 1×1 pixel, a thumbnail strip"""
    max_aspect: Annotated[float, Field(ge=1)] = 4.0
    """a photo longer than this many times its short side is rejected (`bad_aspect_ratio`); 4 lets 2:1 panoramas and
    2.4:1 frames through
    """
    resample: Literal["box", "bilinear", "bicubic", "lanczos"] = "box"
    """downscaling filter: `box` (area average, like OpenCV's INTER_AREA), `bilinear`, `bicubic` or `lanczos` (sharper,
    about 3× the resize cost)
    """

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
    phash_threshold: Annotated[int, Field(ge=0, le=16)] = 4
    """max Hamming distance (bits of 64) for perceptual duplicates"""
    same_place_m: Annotated[float, Field(gt=0)] = 5.0
    """same sequence and within this many metres: a same-place duplicate"""


class BalanceSpec(SpecSection):
    resolution: Resolution = 3
    """H3 resolution of the quota cells (one of `h3_resolutions`)"""
    alpha: Share = 0.5
    """tempering: quota ∝ count^alpha (1 keeps the raw distribution, 0 is flat)"""
    cap: Annotated[int, Field(ge=1)] = 50
    """max images per cell"""
    target_size: Annotated[int, Field(ge=1)] = 1000
    """total images (lowered to what the cells can give)"""
    split_resolution: Resolution = 6
    """H3 resolution of split blocks (any 0–15; finer than `resolution` is computed from the coordinates). 6 (~36 km²)
    puts a test photo's neighbourhood in training, as OSV-5M does; 1 (~600,000 km²) holds out whole regions, for
    region-generalisation studies
    """
    splits: dict[Literal["train", "validation", "test"], Share] = Field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1})
    """split fractions; blocks are assigned to the split furthest below its fraction (see Splits). `val`, the name
    before December 2026, is read as `validation`
    """
    seed: Annotated[int, Field(ge=0)] = 0
    """keys the selection, split and shuffle hashes"""

    @field_validator("splits", mode="before")
    @classmethod
    def _today_names(cls, splits: object) -> object:
        if isinstance(splits, dict) and not (set(splits) >= {"val", "validation"}):
            return {split_name(k) if isinstance(k, str) else k: v for k, v in splits.items()}
        return splits

    @field_validator("splits")
    @classmethod
    def _sum_to_one(cls, splits: dict[str, float]) -> dict[str, float]:
        if abs(sum(splits.values()) - 1) > 1e-6:
            raise ValueError(f"fractions must sum to 1, got {sum(splits.values()):g} from {splits}")
        missing = [s for s in SPLITS if s not in splits]
        if missing:  # an evaluation with no test rows measures nothing: leaving one out must be said
            raise ValueError(f"{', '.join(missing)} missing from {splits}: give each a share, or write it with "
                             "0 to build without it (its evaluation is then skipped)")
        return splits


class ShardSpec(SpecSection):
    target_mb: Annotated[float, Field(gt=0)] = 64.0
    """approximate shard size"""
    row_group_rows: Annotated[int, Field(ge=1)] = 256
    """rows per Parquet row group (the unit a training loader streams)"""
    compression: Literal["zstd", "snappy", "gzip", "brotli", "lz4", "none"] = "zstd"
    """Parquet compression"""


HubRepo = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=200)]


class HubTarget(SpecSection):
    repo: HubRepo
    """the Hub repo (`owner/name`), created on the first push; `HF_TOKEN` must hold a token with write access"""
    private: bool = False
    """create the repo private (a repo that exists keeps its visibility)"""


class PublishSpec(SpecSection):
    dataset: HubTarget | None = None
    """push each new dataset version to this Hub dataset repo (the `hub_dataset` asset, after `dataset_shards`)"""
    model: HubTarget | None = None
    """push each new model version to this Hub model repo (the `hub_model` asset, after `finetuned_model`)"""


class DatasetSpec(SpecSection):
    name: Name
    """dataset name (letters, digits, `-`, `_`)"""
    regions: Annotated[tuple[Region, ...], Field(min_length=1)]
    """the regions to ingest, each an ingest partition (see `regions[].name`, `regions[].bbox`)"""
    sources: Annotated[tuple[SourceSpec, ...], Field(min_length=1)]
    """where photos come from (see the `sources[].…` keys)"""
    h3_resolutions: Annotated[tuple[Resolution, ...], Field(min_length=1)] = (1, 3, 5)
    """H3 resolutions to attach as `h3_r<N>` (increasing)"""
    image: ImageSpec = ImageSpec()
    """how photos are checked and stored (the `image.…` keys)"""
    dedup: DedupSpec = DedupSpec()
    """duplicate removal (the `dedup.…` keys)"""
    balance: BalanceSpec = BalanceSpec()
    """geographic balance and splits (the `balance.…` keys)"""
    shards: ShardSpec = ShardSpec()
    """the published Parquet shards (the `shards.…` keys)"""
    model: dict[str, Any] = Field(default_factory=dict)
    """fine-tuning, evaluation and where the model runs (the `model.…` keys)"""
    index: dict[str, Any] = Field(default_factory=dict)
    """the FAISS indexes (the `index.…` keys)"""
    locate: dict[str, Any] = Field(default_factory=dict)
    """how `predict` and `play` blend the gallery guess with the neighbours' vote (the `locate.…` keys)"""
    workers: Annotated[int, Field(ge=0, le=512)] = 0
    """processes for image work (and the threads that paint the demo's photos); 0 = one per core, at most 512"""
    sub_partitions: Annotated[int, Field(ge=1, le=4096)] = 1
    """ingest runs per region: above 1, each region is split into that many parts (by a hash of the image id) so a
    backfill spreads one region over runs and pods; partition keys become `region|part` (see Scaling out). Changing
    it starts fresh ledgers: the region is fetched again
    """
    refresh_cron: str = "0 3 * * 1"
    """cron (UTC) of the `dataset_refresh` schedule"""
    publish: PublishSpec = PublishSpec()
    """opt-in: push each new version to the Hugging Face Hub, so a scheduled refresh publishes by itself (the
    `publish.…` keys; `geosolver push` does it by hand)
    """

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
    spec class (geosolver_data.model_spec.Spec types the model and index sections)."""
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
