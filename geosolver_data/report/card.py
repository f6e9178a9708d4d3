"""The dataset card: a markdown page beside each dataset version saying what is in it, where it came
from, under which licences, and whom to credit."""

from __future__ import annotations

import pyarrow as pa


def _counts(table: pa.Table, keys: list[str]) -> list[tuple]:
    grouped = table.select(keys).group_by(keys).aggregate([([], "count_all")])
    rows = [tuple(r.values()) for r in grouped.to_pylist()]
    return sorted(rows, key=lambda r: (-r[-1], *(str(v) for v in r[:-1])))


def _table(header: list[str], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("—" if v is None else str(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines)


def dataset_card(manifest: dict, balanced: pa.Table) -> str:
    """Markdown for one version; `balanced` carries source, license and creator per image."""
    splits = ", ".join(f"{k} {v}" for k, v in manifest["splits"].items())
    parts = [
        f"# Dataset card: {manifest['dataset']} {manifest['version']}",
        "",
        f"{manifest['rows']} street-level images ({splits}), built {manifest['created_at']} by Geosolver from "
        f"spec fingerprint `{manifest['spec_fingerprint']}`. Each shard row carries its image's source, "
        "licence and creator; reuse each image under its own licence with the attribution below.",
        "",
        "## Sources",
        "",
        _table(["source", "images"], _counts(balanced, ["source"])),
        "",
        "## Licences",
        "",
        _table(["source", "licence", "images"], _counts(balanced, ["source", "license"])),
        "",
        "## What was left out",
        "",
        _table(["reason", "images"], sorted(manifest["rejects"].items(), key=lambda kv: (-kv[1], kv[0])))
        + "\n\nDuplicates dropped: "
        + (", ".join(f"{k} {v}" for k, v in manifest["dedup_dropped"].items()) or "none") + ".",
        "",
        "## Attribution",
        "",
        "Creators as the source names them (Mapillary and OSV-5M usernames, the Commons `Artist` field):",
        "",
        _table(["source", "creator", "images"], _counts(balanced, ["source", "creator"])),
        "",
    ]
    return "\n".join(parts)
