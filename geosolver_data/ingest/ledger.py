"""The ledger of one region/source ingest: which images are finished, kept as atomic Parquet parts.

Ingest writes what it has finished every few seconds as a pair of parts (rows, rejects), each
written to a temporary name and renamed, so a run killed at any moment (kill -9 included) leaves
only whole parts. The next run skips every finished id and redoes the rest; at the end the parts
are consolidated into the region's raw_images and rejects files, again by rename. An image is
finished when it is in a rows part or its reject is final; a reject that is not final (a busy host,
or unusable bytes within the source's `content_retries`) is tried again by the next run.

Image bytes are kept once. After a consolidation the region's raw_images file *is* the ledger's
base: the rows parts (with bytes) are replaced by one `slim` part of ids and capture times, and
state.json records the base's fingerprint (size, rows). The next consolidation appends the new
rows parts to the base; with none, and no new rejects, it rewrites nothing. Every step is ordered
so that a crash between any two leaves a ledger that consolidates to the same files. A base that
no longer matches its fingerprint (raw_images rewritten from another ledger, after a settings
change and back) is not trusted: its slim parts are dropped and those images fetched again.

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
import numpy as np
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


def _part_name() -> str:
    return f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}"


def _reads(path: Path) -> bool:
    """Whether a file opens as Parquet (its footer is whole)."""
    try:
        pq.ParquetFile(path)
    except (OSError, pa.ArrowException):
        return False
    return True


def _set_aside(path: Path) -> Path:
    """Rename a damaged file out of the ledger's way (kept for inspection, never read again)."""
    aside = path.with_name(f".damaged-{time.time_ns()}-{path.name}")
    path.rename(aside)
    return aside


def _fingerprint(path: Path) -> list[int]:
    """What identifies a consolidated file cheaply: its size and row count."""
    return [path.stat().st_size, pq.ParquetFile(path).metadata.num_rows]


def _concat_ids(paths: list[Path]) -> pa.ChunkedArray:
    chunks = [c for p in paths for c in pq.read_table(p, columns=["image_id"]).column("image_id").chunks]
    return pa.chunked_array(chunks, pa.string())


def _one_row_per_id(ids: pa.ChunkedArray | pa.Array, which: str) -> pa.Array:
    """The position of the first (`min`) or last (`max`) row of each id, by Arrow's hash aggregation
    (no Python set of ids)."""
    order = pa.table({"id": ids, "i": pa.array(np.arange(len(ids)))})
    return order.group_by("id", use_threads=False).aggregate([("i", which)]).column(f"i_{which}").combine_chunks()


def _first_occurrences(ids: pa.ChunkedArray) -> np.ndarray:
    """A mask keeping the first row of each id."""
    keep = np.zeros(len(ids), dtype=bool)
    if len(ids):
        keep[_one_row_per_id(ids, "min").to_numpy()] = True
    return keep


def _latest_rejects(parts: list[Path], stored: pa.Array) -> pa.Table:
    """The latest reject of each id (parts in the order written) that is not among the stored rows,
    sorted by id."""
    if not parts:
        return REJECT_SCHEMA.empty_table()
    table = pa.concat_tables(_rejects_part(p) for p in parts)
    table = table.take(_one_row_per_id(table.column("image_id"), "max"))
    table = table.filter(pc.invert(pc.is_in(table.column("image_id"), value_set=stored)))
    return table.sort_by("image_id")


class Ledger:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".*.tmp"):  # left by a killed run; an hour is far past any part's write
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink(missing_ok=True)

    def _parts(self, kind: str) -> list[Path]:
        return sorted(self.root.glob(f"{kind}-*.parquet"))

    def _finished_row_parts(self) -> list[Path]:
        """Parts naming stored rows: the slim part of the base, then this run's rows parts."""
        return self._parts("slim") + self._parts("rows")

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

    def check_base(self, raw_out: Path, log: Callable[[str], None] = print, rejects_out: Path | None = None) -> None:
        """Before a run: a part or `raw_out` that does not read as Parquet (cut short, overwritten) is named
        and set aside; slim parts stand for rows whose bytes are in `raw_out`, so when `raw_out` is not the
        file they were written with, they are dropped and those images fetched again."""
        outputs = [raw_out, *([rejects_out] if rejects_out else [])]
        for path in [*(p for kind in ("rows", "slim", "rejects") for p in self._parts(kind)), *outputs]:
            if path.exists() and not _reads(path):
                aside = _set_aside(path)
                log(f"{path} is not a whole Parquet file (cut short or overwritten): set aside as {aside.name}; "
                    "what it held is fetched again")
        slim = self._parts("slim")
        if slim and not self._base_matches(raw_out):
            log(f"{raw_out} is not the file this ledger consolidated last (rewritten under other settings?): "
                f"its {sum(pq.ParquetFile(p).metadata.num_rows for p in slim)} images will be fetched again")
            for part in slim:
                part.unlink()
            state = self.state()
            state.pop("base", None)
            state.pop("pending_base", None)
            self.save_state(state)

    def _base_matches(self, raw_out: Path) -> bool:
        if not raw_out.exists() or not _reads(raw_out):
            return False
        state = self.state()
        return _fingerprint(raw_out) in (state.get("base"), state.get("pending_base"))

    def resume(self) -> Resume:
        """Finished ids, and the attempts so far of those a later run tries again."""
        state = Resume()
        for part in self._finished_row_parts():
            state.finished.update(pq.read_table(part, columns=["image_id"]).column("image_id").to_pylist())
        for part in self._parts("rejects"):
            table = _rejects_part(part)
            final = table.column("final")
            state.finished.update(table.filter(final).column("image_id").to_pylist())
            retry = table.filter(pc.invert(final))
            for image_id, attempts in zip(retry.column("image_id").to_pylist(), retry.column("attempts").to_pylist(),
                                          strict=True):
                state.attempts[image_id] = max(state.attempts.get(image_id, 0), attempts)
        for image_id in state.finished:
            state.attempts.pop(image_id, None)
        return state

    def write(self, rows: list[dict], rejects: list[dict]) -> None:
        """Record finished rows and rejects; each file appears whole or not at all."""
        name = _part_name()
        if rows:
            with atomic_path(self.root / f"rows-{name}.parquet") as tmp:
                pq.write_table(pa.Table.from_pylist(rows, schema=RAW_SCHEMA), tmp, compression=_COMPRESSION)
        if rejects:
            with atomic_path(self.root / f"rejects-{name}.parquet") as tmp:
                pq.write_table(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), tmp)

    def consolidate(self, raw_out: Path, rejects_out: Path) -> tuple[int, Counter[str], int]:
        """The base and every new rows part into one rows file (first copy of each id), every rejects
        part into one rejects file (the latest outcome of each id that never made it into rows);
        nothing is rewritten when nothing is new. Returns the row count, the reject reasons and how
        many rejects a later run tries again."""
        full, slim = self._parts("rows"), self._parts("slim")
        if slim and not self._base_matches(raw_out):
            raise RuntimeError(f"{raw_out} changed under the ledger {self.root} during the run")
        sources = ([raw_out] if slim else []) + full
        row_ids = _concat_ids(sources)
        rows_changed = bool(full) or not raw_out.exists()
        if rows_changed:
            self._rewrite_rows(sources, row_ids, raw_out, slim, full)
        row_set = pc.unique(row_ids)
        rejects_parts = self._parts("rejects")
        state = self.state()
        if rows_changed or state.get("rejects_parts") != [p.name for p in rejects_parts] or not rejects_out.exists():
            table = _latest_rejects(rejects_parts, row_set)
            with atomic_path(rejects_out) as tmp:
                pq.write_table(table, tmp)
            # One compacted part for the next run instead of thousands of small ones; it sorts after
            # every part it replaces, so a crash that leaves both consolidates the same.
            if len(rejects_parts) > 1:
                with atomic_path(self.root / f"rejects-{_part_name()}.parquet") as tmp:
                    pq.write_table(table, tmp)
                for part in rejects_parts:
                    part.unlink()
            self.save_state({**self.state(), "rejects_parts": [p.name for p in self._parts("rejects")]})
        else:
            table = pq.read_table(rejects_out)
        to_retry = table.num_rows - (pc.sum(table.column("final")).as_py() or 0)
        return len(row_set), Counter(table.column("reason").to_pylist()), to_retry

    def _rewrite_rows(self, sources: list[Path], ids: pa.ChunkedArray, raw_out: Path, slim: list[Path],
                      full: list[Path]) -> None:
        """raw_out := the first copy of each id across `sources`, then the rows parts become one slim part."""
        keep = _first_occurrences(ids)
        offset = 0
        with atomic_path(raw_out) as tmp:
            with pq.ParquetWriter(tmp, RAW_SCHEMA, compression=_COMPRESSION) as writer:
                for source in sources:
                    for batch in pq.ParquetFile(source).iter_batches(batch_size=256):
                        mask = keep[offset:offset + batch.num_rows]
                        offset += batch.num_rows
                        if mask.any():
                            writer.write_table(pa.Table.from_batches([batch]).filter(pa.array(mask)).cast(RAW_SCHEMA))
            # Announced before the rename: a crash right after it finds raw_out already trusted.
            self.save_state({**self.state(), "pending_base": _fingerprint(tmp)})
        slim_table = pq.read_table(raw_out, columns=["image_id", "captured_at"])
        with atomic_path(self.root / f"slim-{_part_name()}.parquet") as tmp:
            pq.write_table(slim_table, tmp, compression="zstd")
        for part in slim + full:
            part.unlink()
        state = self.state()
        state["base"] = state.pop("pending_base")
        self.save_state(state)

    def max_captured_at_ms(self) -> int | None:
        """The latest capture time among finished rows: the watermark of an incremental refresh."""
        best = None
        for part in self._finished_row_parts():
            value = pc.max(pq.read_table(part, columns=["captured_at"]).column("captured_at")).as_py()
            if value is not None:
                ms = int(value.timestamp() * 1000)
                best = ms if best is None else max(best, ms)
        return best

    @property
    def _state_path(self) -> Path:
        return self.root / "state.json"

    def state(self) -> dict:
        """The ledger's state; one that does not parse (cut short) is set aside and the ledger starts from
        its parts alone (the base is no longer trusted, so its images are fetched again)."""
        if not self._state_path.exists():
            return {}
        try:
            state = json.loads(self._state_path.read_text())
        except (ValueError, UnicodeDecodeError):
            _set_aside(self._state_path)
            return {}
        return state if isinstance(state, dict) else {}

    def save_state(self, state: dict) -> None:
        write_json(self._state_path, state)
