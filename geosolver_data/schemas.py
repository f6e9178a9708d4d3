"""Arrow schemas of the tables every stage reads and writes, and what each reject reason means for
the next run."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa

# The splits, named as the Hugging Face Hub names them. Versions published before December 2026 called the
# validation split `val` (in shards, manifests and specs): readers of old versions and old specs map it.
SPLITS = ("train", "validation", "test")
OLD_SPLIT_NAMES = {"val": "validation"}


def split_name(name: str) -> str:
    """A split's name today, whatever the version or spec that holds it says."""
    return OLD_SPLIT_NAMES.get(name, name)


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
    ("final", pa.bool_()),  # False: a later run tries this image again
    ("attempts", pa.int32()),  # runs that ended with this image rejected, this one included
])

# A host that was busy, slow or unreachable: every later run tries again, however often it failed.
NETWORK_REASONS = frozenset({*(f"http_{s}" for s in (408, 425, 429, 500, 502, 503, 504)), "timeout",
                             "connection_error", "expired_url", "robots_unavailable", "bad_range"})
# Bytes that came back unusable (an HTML page with status 200, a body cut short, undecodable bytes)
# are often a CDN or captive-portal hiccup when they come from a remote host: later runs try again,
# up to the source's `content_retries`. From a local file or archive they are final at once.
CONTENT_REASONS = frozenset({"not_an_image", "undecodable", "truncated", "corrupt_member"})
# Our own code or a library failed on one image: retried like content, wherever it came from.
WORKER_REASONS = frozenset({"worker_error"})
RetryClass = Literal["network", "content", "final"]


def retry_class(reason: str, remote: bool) -> RetryClass:
    if reason in NETWORK_REASONS:
        return "network"
    if reason in WORKER_REASONS or (remote and reason in CONTENT_REASONS):
        return "content"
    return "final"


def is_final(reason: str, remote: bool, attempts: int, content_retries: int) -> bool:
    """Whether a reject is the image's last word: no later run will try it again."""
    kind = retry_class(reason, remote)
    return kind == "final" or (kind == "content" and attempts > content_retries)

DROPPED_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("reason", pa.string()),  # exact | perceptual | same_place
    ("duplicate_of", pa.string()),
    ("distance", pa.float64()),  # Hamming bits (perceptual) or metres (same_place); 0 for exact
])

# Metadata columns carried from dedup onwards (everything but the bytes).
META_COLUMNS = [f.name for f in RAW_SCHEMA if f.name != "image"]
