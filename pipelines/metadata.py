"""What the Dagster UI shows: markdown tables, images inline, sizes in human units, column schemas."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pyarrow as pa
from PIL import Image

from geosolver_data.report.markdown import table
from geosolver_data.shards import COLUMN_DOCS
from geosolver_data.store.artifact import Artifact


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def inline_png(path: Path, alt: str, width: int = 720) -> dg.MetadataValue:
    """The picture itself in the metadata (a small PNG as a data URI), not a path that only means
    something on the machine that wrote it."""
    with Image.open(path) as image:
        image.thumbnail((width, width))
        out = io.BytesIO()
        image.convert("RGB").save(out, "PNG", optimize=True)
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(out.getvalue()).decode()})")


def published_artifact(artifact: Artifact, metadata: dict) -> dg.MaterializeResult:
    """A versioned artifact's materialisation: its version is Dagster's data version (downstream
    automation sees a change only when the content changed), shown with whether it is new and its path."""
    return dg.MaterializeResult(
        data_version=dg.DataVersion(artifact.version),
        metadata={"version": artifact.version, "new_version": artifact.new, **metadata,
                  "path": dg.MetadataValue.path(str(artifact.path))})


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    """The columns with their types and what each holds (shards.COLUMN_DOCS, which the dataset card shows too)."""
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type), description=COLUMN_DOCS.get(
        "h3_r<N>" if f.name.startswith("h3_r") else f.name)) for f in schema])


def table_metadata(rows: int, schema: pa.Schema) -> dict:
    """Dagster's own keys for a table: the UI shows the row count and the columns."""
    return {"dagster/row_count": rows, "dagster/column_schema": column_schema(schema)}


def history_table(history: list[dict]) -> str:
    rows = [(h["model"], h["created_at"], h["median_km"]) for h in history]
    return (table(["earlier model", "evaluated", "median km (dataset test)"], rows) if rows
            else "no earlier model has been evaluated")


def counts_table(counts: Mapping, key: str) -> str:
    rows = sorted(counts.items(), key=lambda kv: str(kv[0]))
    return table([key, "count"], rows) if rows else "nothing"


def accounting_totals(accounts: Mapping) -> dict[str, int]:
    """listed = stored + rejected + to_retry, over every source of the region."""
    keys = ("listed", "stored", "rejected", "to_retry")
    return {key: sum(getattr(a, key) for a in accounts.values()) for key in keys}


def accounting_table(accounts: Mapping) -> str:
    """Per source: where every candidate listed by the run ended."""
    rows = [(src, a.listed, a.stored, a.rejected, a.to_retry) for src, a in sorted(accounts.items())]
    return table(["source", "listed", "stored", "rejected (final)", "to retry next run"], rows)


def balance_table(report: Mapping) -> str:
    stats = ("cells", "images", "gini", "entropy", "top1pct_share")
    return table(["statistic", "before", "after"], [(s, report["before"][s], report["after"][s]) for s in stats])
