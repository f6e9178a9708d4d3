"""The ledger of one region/source ingest: which images are finished, kept as atomic Parquet parts.

Ingest writes what it has finished every few seconds as a pair of parts (rows, rejects), each
written to a temporary name and renamed, so a run killed at any moment (kill -9 included) leaves
only whole parts. The next run skips every finished id and redoes the rest; at the end the parts
are consolidated into the region's raw_images and rejects files, again by rename. An image is
finished when it is in a rows part or was rejected for a final reason; images that failed for a
passing reason (429, 5xx, timeouts) are tried again by the next run.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from geosolver_data.fetch import is_retryable
from geosolver_data.layout import atomic_path, write_json
from geosolver_data.records import RAW_SCHEMA, REJECT_SCHEMA

_counter = itertools.count()
# JPEG bytes do not compress: zstd for the metadata columns, none for the image column.
_COMPRESSION = {f.name: "zstd" for f in RAW_SCHEMA} | {"image": "none"}


class Ledger:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".*.tmp"):  # left by a killed run; an hour is far past any part's write
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink(missing_ok=True)

    def _parts(self, kind: str) -> list[Path]:
        return sorted(self.root.glob(f"{kind}-*.parquet"))

    def finished(self) -> set[str]:
        """Ids that no later run needs to touch."""
        done: set[str] = set()
        for part in self._parts("rows"):
            done.update(pq.read_table(part, columns=["image_id"]).column("image_id").to_pylist())
        for part in self._parts("rejects"):
            table = pq.read_table(part, columns=["image_id", "reason"])
            for image_id, reason in zip(*(table.column(c).to_pylist() for c in ("image_id", "reason")), strict=True):
                if not is_retryable(reason):
                    done.add(image_id)
        return done

    def write(self, rows: list[dict], rejects: list[dict]) -> None:
        """Record finished rows and rejects; each file appears whole or not at all."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}"
        if rows:
            with atomic_path(self.root / f"rows-{name}.parquet") as tmp:
                pq.write_table(pa.Table.from_pylist(rows, schema=RAW_SCHEMA), tmp, compression=_COMPRESSION)
        if rejects:
            with atomic_path(self.root / f"rejects-{name}.parquet") as tmp:
                pq.write_table(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), tmp)

    def consolidate(self, raw_out: Path, rejects_out: Path) -> tuple[int, Counter[str]]:
        """Every part into one rows file (first copy of each id) and one rejects file (the latest
        outcome of each id that never made it into rows). Returns the row count and reject reasons."""
        seen: set[str] = set()
        with atomic_path(raw_out) as tmp, pq.ParquetWriter(tmp, RAW_SCHEMA, compression=_COMPRESSION) as writer:
            for part in self._parts("rows"):
                for batch in pq.ParquetFile(part).iter_batches(batch_size=256):
                    ids = batch.column("image_id").to_pylist()
                    keep = [i not in seen and not seen.add(i) for i in ids]  # type: ignore[func-returns-value]
                    if any(keep):
                        writer.write_table(pa.Table.from_batches([batch]).filter(pa.array(keep)).cast(RAW_SCHEMA))
        latest: dict[str, dict] = {}
        for part in self._parts("rejects"):
            for row in pq.read_table(part).to_pylist():
                latest[row["image_id"]] = row
        rejects = [row for image_id, row in sorted(latest.items()) if image_id not in seen]
        table = pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA)
        with atomic_path(rejects_out) as tmp:
            pq.write_table(table, tmp)
        return len(seen), Counter(table.column("reason").to_pylist())

    def max_captured_at_ms(self) -> int | None:
        """The latest capture time among finished rows: the watermark of an incremental refresh."""
        best = None
        for part in self._parts("rows"):
            value = pc.max(pq.read_table(part, columns=["captured_at"]).column("captured_at")).as_py()
            if value is not None:
                ms = int(value.timestamp() * 1000)
                best = ms if best is None else max(best, ms)
        return best

    @property
    def _state_path(self) -> Path:
        return self.root / "state.json"

    def state(self) -> dict:
        return json.loads(self._state_path.read_text()) if self._state_path.exists() else {}

    def save_state(self, state: dict) -> None:
        write_json(self._state_path, state)
