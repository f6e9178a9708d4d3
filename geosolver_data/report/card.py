"""The dataset card: a markdown page beside each dataset version saying what is in it, where it came
from, under which licences, and whom to credit. It is the version folder's `README.md` with Hugging
Face front matter (splits, data files, features with `image` as an Image), so
`datasets.load_dataset(<version folder>)` gives decoded images without any cast."""

from __future__ import annotations

import pyarrow as pa
import yaml

from geosolver_data.report.markdown import table
from geosolver_data.schemas import SPLITS
from geosolver_data.shards import COLUMN_DOCS
from geosolver_data.store.manifests import DatasetManifest


def _hf_dtype(name: str, arrow_type: pa.DataType) -> str:
    if name == "image":
        return "image"  # JPEG bytes; the Image feature decodes them
    if pa.types.is_floating(arrow_type) and arrow_type.bit_width == 64:
        return "float64"
    return str(arrow_type)  # string, uint64, int32, timestamp[us, tz=…] are spelled alike


def hf_front_matter(manifest: DatasetManifest, schema: pa.Schema) -> str:
    """YAML front matter that makes the version folder a Hugging Face dataset."""
    present = [s for s in SPLITS if any(shard.split == s for shard in manifest.shards)]  # the Hub's names
    meta = {
        "pretty_name": f"{manifest.dataset} {manifest.version}",
        "license": "other",
        "license_name": "per-image licences",
        "license_details": "Each row's `license` and `creator` columns; see Licences and Attribution below.",
        "task_categories": ["image-feature-extraction"],  # retrieval: images and places in one space
        "tags": ["geolocation", "street-level imagery", "h3", "geosolver"],
        "size_categories": [_size_category(manifest.rows)],
        "configs": [{"config_name": "default", "data_files": [
            {"split": s, "path": f"shards/{s}-*.parquet"} for s in present]}],
        "dataset_info": {
            "features": [{"name": f.name, "dtype": _hf_dtype(f.name, f.type)} for f in schema],
            "splits": [{"name": s, "num_examples": manifest.splits[s]} for s in present],
        },
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n"


def _size_category(rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if rows < limit:
            return label
    return "10M<n<100M"


def _counts(table: pa.Table, keys: list[str]) -> list[tuple]:
    grouped = table.select(keys).group_by(keys).aggregate([([], "count_all")])
    rows = [tuple(r.values()) for r in grouped.to_pylist()]
    return sorted(rows, key=lambda r: (-r[-1], *(str(v) for v in r[:-1])))


def dataset_card(manifest: DatasetManifest, balanced: pa.Table, schema: pa.Schema) -> str:
    """README.md for one version; `balanced` carries source, license and creator per image, `schema`
    is the shards'."""
    splits = ", ".join(f"{k} {v}" for k, v in manifest.splits.items())
    parts = [
        f"# Dataset card: {manifest.dataset} {manifest.version}",
        "",
        f"{manifest.rows} street-level images ({splits}), built {manifest.created_at} by Geosolver from "
        f"spec fingerprint `{manifest.spec_fingerprint}`. Each shard row carries its image's source, "
        "licence and creator; reuse each image under its own licence with the attribution below.",
        "",
        "![where the photos are, by split](coverage.png)",
        "",
        "## Load it",
        "",
        "```python",
        "import os",
        "from datasets import load_dataset",
        "",
        'home = os.environ.get("GEOSOLVER_HOME", ".geosolver")  # where this version was published',
        f'ds = load_dataset(os.path.join(home, "datasets", "{manifest.dataset}", "{manifest.version}"))',
        'row = ds["train"][0]  # row["image"] is a PIL image; lat, lon, country, h3 cells and licence beside it',
        'print(row["image"].size, row["lat"], row["lon"], row["country"], row["license"])',
        "```",
        "",
        "## Columns",
        "",
        table(["column", "type", "meaning"], [(f.name, str(f.type), COLUMN_DOCS.get(
            "h3_r<N>" if f.name.startswith("h3_r") else f.name, "")) for f in schema]),
        "",
        "## Sources",
        "",
        table(["source", "images"], _counts(balanced, ["source"])),
        "",
        "## Licences",
        "",
        table(["source", "licence", "images"], _counts(balanced, ["source", "license"])),
        "",
        "## What was left out",
        "",
        table(["reason", "images"], sorted(manifest.rejects.items(), key=lambda kv: (-kv[1], kv[0])))
        + "\n\nDuplicates dropped: "
        + (", ".join(f"{k} {v}" for k, v in manifest.dedup_dropped.items()) or "none") + ".",
        "",
        "## Attribution",
        "",
        "Creators as the source names them (Mapillary and OSV-5M usernames, the Commons `Artist` field):",
        "",
        table(["source", "creator", "images"], _counts(balanced, ["source", "creator"])),
        "",
    ]
    return hf_front_matter(manifest, schema) + "\n".join(parts)
