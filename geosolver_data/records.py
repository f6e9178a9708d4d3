"""Arrow schemas of the tables every stage reads and writes."""

from __future__ import annotations

import pyarrow as pa

RAW_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("source", pa.string()),
    ("lat", pa.float64()),
    ("lon", pa.float64()),
    ("captured_at", pa.timestamp("ms", tz="UTC")),
    ("sequence_id", pa.string()),
    ("license", pa.string()),
    ("creator", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("sha256", pa.string()),
    ("phash", pa.uint64()),
    ("image", pa.binary()),
])

REJECT_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("source", pa.string()),
    ("region", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
])

DROPPED_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("reason", pa.string()),  # exact | perceptual | same_place
    ("duplicate_of", pa.string()),
    ("distance", pa.float64()),  # Hamming bits (perceptual) or metres (same_place); 0 for exact
])

# Metadata columns carried from dedup onwards (everything but the bytes).
META_COLUMNS = [f.name for f in RAW_SCHEMA if f.name != "image"]
