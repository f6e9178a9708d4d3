"""The ingest promise, checked: every candidate a run listed for its region ends exactly once, as a
stored row or as a reject with its reason (final, or to be tried again by the next run).

The engine checks it at the end of every run and fails the run when it does not hold; the asset
check on raw_images checks it again from the files alone, so a later change to them shows too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from geosolver_data.errors import GeosolverError
from geosolver_data.store.atomic import atomic_path

SHOWN = 20  # ids named in a failure message


class AccountingError(GeosolverError, RuntimeError):
    """Some listed candidates are in neither table (or in both): the run must not count as done."""


@dataclass(frozen=True)
class Accounting:
    listed: int  # distinct candidates of this region the run listed (those of other regions excluded)
    stored: int  # of those, rows of raw_images
    rejected: int  # of those, final rejects
    to_retry: int  # of those, rejects the next run tries again
    missing: tuple[str, ...] = ()  # listed, but in neither table
    twice: tuple[str, ...] = ()  # in both tables, or twice in one

    @property
    def holds(self) -> bool:
        return not self.missing and not self.twice and self.listed == self.stored + self.rejected + self.to_retry

    def problems(self) -> list[str]:
        found = []
        if self.missing:
            found.append(f"{len(self.missing)} listed image(s) are in neither raw_images nor the rejects: "
                         f"{', '.join(self.missing[:SHOWN])}" + (" ..." if len(self.missing) > SHOWN else ""))
        if self.twice:
            found.append(f"{len(self.twice)} image(s) are recorded more than once: "
                         f"{', '.join(self.twice[:SHOWN])}" + (" ..." if len(self.twice) > SHOWN else ""))
        if not found and not self.holds:
            found.append(f"listed {self.listed} != stored {self.stored} + rejected {self.rejected} "
                         f"+ to retry {self.to_retry}")
        return found


def _duplicates(ids: pa.ChunkedArray | pa.Array) -> list[str]:
    counts = pc.value_counts(ids)
    return sorted(counts.field("values").filter(pc.greater(counts.field("counts"), 1)).to_pylist())


def account(listed: pa.Array, raw_path: Path, rejects_path: Path) -> Accounting:
    """Where each listed id ended, from the region's raw_images and rejects files."""
    stored_ids = pq.read_table(raw_path, columns=["image_id"]).column("image_id")
    rejects = pq.read_table(rejects_path, columns=["image_id", "final"])
    rejected_ids = rejects.column("image_id")
    final = rejects.column("final").fill_null(True)
    in_raw = pc.is_in(listed, value_set=stored_ids)
    in_final = pc.is_in(listed, value_set=rejected_ids.filter(final))
    in_retry = pc.is_in(listed, value_set=rejected_ids.filter(pc.invert(final)))
    nowhere = pc.invert(pc.or_(pc.or_(in_raw, in_final), in_retry))
    both = set(pc.filter(stored_ids, pc.is_in(stored_ids, value_set=rejected_ids)).to_pylist())
    twice = sorted(both | set(_duplicates(stored_ids)) | set(_duplicates(rejected_ids)))
    return Accounting(
        listed=len(listed),
        stored=pc.sum(in_raw).as_py() or 0,
        rejected=pc.sum(in_final).as_py() or 0,
        to_retry=pc.sum(in_retry).as_py() or 0,
        missing=tuple(sorted(pc.filter(listed, nowhere).to_pylist())),
        twice=tuple(twice),
    )


def save_listing(listed: pa.Array, path: Path) -> None:
    """The ids a run listed for its region, for the asset check to account for again. The same ids
    as the last run's are not written again (a refresh with nothing new rewrites no file, and a
    remote home uploads nothing)."""
    if path.exists():
        before = load_listing(path)  # the same ids, in any order (each is listed once)
        if len(before) == len(listed) and pc.all(pc.is_in(listed, value_set=before)).as_py() is not False:
            return
    with atomic_path(path) as tmp:
        pq.write_table(pa.table({"image_id": listed}), tmp, compression="zstd")


def load_listing(path: Path) -> pa.Array:
    return pq.read_table(path).column("image_id").combine_chunks()
