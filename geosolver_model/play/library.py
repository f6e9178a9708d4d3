"""What `geosolver play` reads, and only reads: one published model, the indexes built with it, the
dataset version it was trained on (its shards' rows and image bytes) and its latest evaluation.

Nothing here writes under the home. Image bytes are read one row group at a time, on demand, so a
dataset of millions of rows costs the metadata columns in memory, not the images.
"""

from __future__ import annotations

import functools
import io
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from geosolver_data.errors import GeosolverError
from geosolver_data.model_spec import Spec, load_spec
from geosolver_data.store.artifact import Artifact, ArtifactMissing
from geosolver_data.store.home import Home
from geosolver_data.store.manifests import read_dataset_manifest
from geosolver_model.evaluation.metrics import distance_metrics
from geosolver_model.names import LOCATOR, PREDICTIONS, PUBLISHED
from geosolver_model.net.images import decode
from geosolver_model.retrieval.index import IndexUnavailable
from geosolver_model.retrieval.locate import Locator
from geosolver_model.retrieval.published import dataset_of

ROW_COLUMNS = ["image_id", "split", "lat", "lon", "country", "license", "creator", "source"]
THUMB_SIDE = 256


class NotPlayable(GeosolverError, RuntimeError):
    """The home lacks something the app needs (a model, an index, an evaluation's predictions)."""


@dataclass(frozen=True)
class ShardRows:
    """Every row's metadata, and where its image bytes lie (shard file, row group, offset in it)."""

    meta: pa.Table  # ROW_COLUMNS + shard (int), group (int), offset (int)
    files: list[Path]
    by_id: dict[str, int]

    @classmethod
    def read(cls, version_dir: Path) -> ShardRows:
        files, parts = [], []
        for number, path in enumerate(read_dataset_manifest(version_dir).shard_paths(version_dir)):
            pf = pq.ParquetFile(path)
            table = pf.read(columns=[c for c in ROW_COLUMNS if c in pf.schema_arrow.names])
            sizes = np.array([pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)], dtype=np.int64)
            groups = np.repeat(np.arange(len(sizes)), sizes)  # each row's row group
            offsets = np.arange(table.num_rows) - (np.cumsum(sizes) - sizes)[groups]  # its place in that group
            parts.append(table.append_column("shard", pa.array(np.full(table.num_rows, number)))
                         .append_column("group", pa.array(groups)).append_column("offset", pa.array(offsets)))
            files.append(path)
        meta = pa.concat_tables(parts, promote_options="default")
        return cls(meta, files, {i: n for n, i in enumerate(meta.column("image_id").to_pylist())})

    def row(self, image_id: str) -> dict:
        """The metadata of one row; KeyError when the dataset version has no such image."""
        return {k: v for k, v in self.meta.slice(self.by_id[image_id], 1).to_pylist()[0].items()
                if k not in ("shard", "group", "offset")}

    def image_bytes(self, image_id: str) -> bytes:
        n = self.by_id[image_id]
        shard, group, offset = (self.meta.column(c)[n].as_py() for c in ("shard", "group", "offset"))
        return _row_group_images(self.files[shard], group)[offset].as_py()

    def ids(self, split: str) -> list[str]:
        return self.meta.filter(pc.equal(self.meta.column("split"), split)).column("image_id").to_pylist()


@functools.lru_cache(maxsize=8)
def _row_group_images(path: Path, group: int) -> pa.ChunkedArray:
    return pq.ParquetFile(path).read_row_group(group, columns=["image"]).column("image")


def thumbnail(jpeg: bytes, side: int = THUMB_SIDE) -> bytes:
    image = Image.open(io.BytesIO(jpeg))
    image.draft("RGB", (side, side))  # decode JPEGs at a fraction of their size: thumbnails are small
    image = image.convert("RGB")
    image.thumbnail((side, side))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


class Library:
    """The artifacts one `geosolver play` serves. `locator` (model + indexes) is shared by the handlers:
    torch modules are not reentrant across threads, so calls into it hold `lock`."""

    def __init__(self, home: Home, locator: Locator, model: Artifact, rows: ShardRows,
                 evaluation: Artifact | None, neighbours: int = 10) -> None:
        self.home, self.locator, self.model, self.rows, self.evaluation = home, locator, model, rows, evaluation
        self.neighbours = neighbours  # image neighbours that vote (the spec's index.neighbours)
        self.lock = threading.Lock()
        self.test_ids = rows.ids("test")
        self.test_set = frozenset(self.test_ids)

    @classmethod
    def open(cls, home: Home, index_version: str | None = None, spec: Spec | None = None) -> Library:
        """The latest (or the given) index and what belongs with it; `spec` gives the locate settings and device."""
        spec = spec or load_spec()
        try:
            locator = Locator.open(home, index_version, spec.locate, spec.model.device, spec.model.precision)
        except IndexUnavailable as exc:
            raise NotPlayable(f"{exc}: materialise the model and index assets first (make run)") from exc
        except ArtifactMissing as exc:  # damaged: its message names the remedy
            raise NotPlayable(str(exc)) from exc
        model = home.models.get(locator.versions["model"])
        evals = [e for e in home.evals.all() if e.info.model_version == model.version]
        evaluation = home.evals.require_intact(evals[-1].version) if evals else None
        try:
            rows = ShardRows.read(dataset_of(home, model))
        except ArtifactMissing as exc:  # a damaged dataset version: refused, never shown in part
            raise NotPlayable(str(exc)) from exc
        return cls(home, locator, model, rows, evaluation, spec.index.neighbours)

    @property
    def versions(self) -> dict:
        return {**self.locator.versions, "dataset": self.model.info.dataset.version,
                "dataset_name": self.model.info.dataset.name,
                "evaluation": self.evaluation.version if self.evaluation else None}

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one Library per app, kept for the app's life
    def thumbnail(self, image_id: str) -> bytes:
        return thumbnail(self.rows.image_bytes(image_id))

    @functools.lru_cache(maxsize=4096)  # noqa: B019
    def model_guess(self, image_id: str) -> dict:
        """The model's top candidate for a dataset image, as `geosolver predict` would answer."""
        with self.lock:
            found = self.locator.locate(decode(self.rows.image_bytes(image_id)), top_k=1,  # stored size already
                                        neighbours=self.neighbours)
        return found["candidates"][0]

    def locate_upload(self, data: bytes, top_k: int) -> dict:
        """A photo someone dropped: decoded by the same safe path as ingest (ValueError says why not)."""
        with self.lock:
            return self.locator.locate_photo(data, top_k, self.neighbours)

    def predictions(self) -> Path:
        if self.evaluation is None:
            raise NotPlayable(f"model {self.model.version} has no evaluation: materialise geolocation_eval")
        path = self.evaluation.path / PREDICTIONS
        if not path.exists():
            raise NotPlayable(f"evaluation {self.evaluation.version} predates per-image predictions: "
                              "materialise geolocation_eval again")
        return path

    def errors(self, comparator: str | None, country: str | None) -> dict:
        """Every test image of the evaluation for one comparator (default: the published one), optionally
        one country; with the choices a filter offers."""
        path = str(self.predictions())
        with duckdb.connect() as db:
            comparators = [r[0] for r in db.execute(
                "SELECT DISTINCT comparator FROM read_parquet(?) ORDER BY comparator", [path]).fetchall()]
            # what the rounds' guesses come from (the locator), else the published weights' plain retrieval
            comparator = comparator or next((c for c in (LOCATOR, PUBLISHED) if c in comparators), comparators[0])
            countries = db.execute("SELECT country, count(*) FROM read_parquet(?) WHERE comparator = ? "
                                   "GROUP BY country ORDER BY country", [path, comparator]).fetchall()
            found = db.execute(
                "SELECT image_id, lat, lon, country, guess_lat, guess_lon, guess_country, error_km, points "
                "FROM read_parquet(?) WHERE comparator = ? AND (? IS NULL OR country = ?) ORDER BY error_km",
                [path, comparator, country, country])
            names = [d[0] for d in found.description]
            rows = [dict(zip(names, r, strict=True)) for r in found.fetchall()]
        # The figures of what is shown, by the one definition eval.json uses (metrics.distance_metrics).
        figures = distance_metrics(np.array([r["error_km"] for r in rows], dtype=float)) if rows else None
        return {"comparator": comparator, "comparators": comparators,
                "countries": [{"country": c, "n": n} for c, n in countries], "country": country,
                "evaluation": self.evaluation.version, "points": rows, "figures": figures}
