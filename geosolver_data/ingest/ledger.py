"""The ledger of one region/source ingest: which images are finished, kept as atomic Parquet parts.

Ingest writes what it has finished every few seconds as a pair of parts (rows, rejects), each
written to a temporary name and renamed, so a run killed at any moment (kill -9 included) leaves
only whole parts. The next run skips every finished id and redoes the rest; at the end the parts
are consolidated into the region's raw_images and rejects files, again by rename. An image is
finished when it is in a rows part or its reject is final; a reject that is not final (a busy host,
or unusable bytes within the source's `content_retries`) is tried again by the next run.

Only one process at a time works on a ledger: `locked()` makes a second run of the same region and
source wait for the first, then find its work done.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import filelock
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from geosolver_data.schemas import NETWORK_REASONS, RAW_SCHEMA, REJECT_SCHEMA
from geosolver_data.store.atomic import atomic_path, write_json

_counter = itertools.count()
# JPEG bytes do not compress: zstd for the metadata columns, none for the image column.
_COMPRESSION = {f.name: "zstd" for f in RAW_SCHEMA} | {"image": "none"}
LOCK_NAME = ".lock"


@dataclass
class Resume:
    """What earlier runs left: ids no run needs to touch again, and for the ids they rejected but
    will try again, how many runs have rejected each so far."""

    finished: set[str] = field(default_factory=set)
    attempts: dict[str, int] = field(default_factory=dict)


def _rejects_part(path: Path) -> pa.Table:
    """A rejects part; parts written before rejects carried `final` and `attempts` get the values
    the rules of that time implied (only busy hosts and cut-short bodies were retried)."""
    table = pq.read_table(path)
    if "final" not in table.column_names:
        retried = pa.array(sorted(NETWORK_REASONS | {"truncated"}))
        table = table.append_column("final", pc.invert(pc.is_in(table.column("reason"), value_set=retried)))
    if "attempts" not in table.column_names:
        table = table.append_column("attempts", pa.array([1] * table.num_rows, pa.int32()))
    return table.select(REJECT_SCHEMA.names).cast(REJECT_SCHEMA)


class Ledger:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".*.tmp"):  # left by a killed run; an hour is far past any part's write
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink(missing_ok=True)

    def _parts(self, kind: str) -> list[Path]:
        return sorted(self.root.glob(f"{kind}-*.parquet"))

    @contextlib.contextmanager
    def locked(self, log: Callable[[str], None] = print, every_s: float = 30.0) -> Iterator[None]:
        """Hold this ledger for one run; a second run waits (saying so every `every_s`), then resumes
        from what the first finished. The lock is the OS's (flock), released even by kill -9."""
        lock = filelock.FileLock(self.root / LOCK_NAME)
        timeout = 0.0
        while True:
            try:
                lock.acquire(timeout=timeout)
                break
            except filelock.Timeout:
                log(f"another run is ingesting into {self.root}: waiting for it to end, then resuming from its work")
                timeout = every_s
        try:
            yield
        finally:
            lock.release()

    def resume(self) -> Resume:
        """Finished ids, and the attempts so far of those a later run tries again."""
        state = Resume()
        for part in self._parts("rows"):
            state.finished.update(pq.read_table(part, columns=["image_id"]).column("image_id").to_pylist())
        for part in self._parts("rejects"):
            table = _rejects_part(part)
            rows = zip(*(table.column(c).to_pylist() for c in ("image_id", "final", "attempts")), strict=True)
            for image_id, final, attempts in rows:
                if final:
                    state.finished.add(image_id)
                else:
                    state.attempts[image_id] = max(state.attempts.get(image_id, 0), attempts)
        for image_id in state.finished:
            state.attempts.pop(image_id, None)
        return state

    def write(self, rows: list[dict], rejects: list[dict]) -> None:
        """Record finished rows and rejects; each file appears whole or not at all."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}"
        if rows:
            with atomic_path(self.root / f"rows-{name}.parquet") as tmp:
                pq.write_table(pa.Table.from_pylist(rows, schema=RAW_SCHEMA), tmp, compression=_COMPRESSION)
        if rejects:
            with atomic_path(self.root / f"rejects-{name}.parquet") as tmp:
                pq.write_table(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), tmp)

    def consolidate(self, raw_out: Path, rejects_out: Path) -> tuple[int, Counter[str], int]:
        """Every part into one rows file (first copy of each id) and one rejects file (the latest
        outcome of each id that never made it into rows). Returns the row count, the reject reasons
        and how many rejects a later run tries again."""
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
            for row in _rejects_part(part).to_pylist():
                latest[row["image_id"]] = row
        rejects = [row for image_id, row in sorted(latest.items()) if image_id not in seen]
        table = pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA)
        with atomic_path(rejects_out) as tmp:
            pq.write_table(table, tmp)
        to_retry = table.num_rows - (pc.sum(table.column("final")).as_py() or 0)
        return len(seen), Counter(table.column("reason").to_pylist()), to_retry

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
