"""Progress with rate and ETA: a log line every few seconds (what Dagster's log shows), and a
tqdm bar when stderr is a terminal. Ingest, embedding, evaluation, `predict` and `benchmark` count with it;
training's log line uses its `duration`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    """`1h02m`, `3m05s`, `42s`: an ETA a person reads at a glance."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Counts finished items against a total that may still be growing (a listing in progress), or, given
    `total`, one known from the start."""

    def __init__(self, label: str, log: Callable[[str], None], every_s: float = 5.0, bar: bool | None = None,
                 unit: str = "images", total: int | None = None) -> None:
        self.label, self.log, self.every_s, self.unit = label, log, every_s, unit
        self.total, self.done, self.listing_done = total or 0, 0, total is not None
        self.start = self.last = time.monotonic()
        self.bar = None
        if bar if bar is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(desc=label, unit="img", total=self.total, dynamic_ncols=True)

    def listed(self, n: int = 1) -> None:
        self.total += n
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        if time.monotonic() - self.last >= self.every_s:
            self.report()

    def listing_finished(self) -> None:
        """Every candidate is listed: the total is known, so are the percentage and the ETA."""
        self.listing_done = True

    def message(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        total = f"{self.total}" if self.listing_done else f"{self.total}+ listed"
        text = f"{self.label}: {self.done}/{total} {self.unit}, {rate:.1f}/s"
        if self.total and self.listing_done:
            text += f" ({100 * self.done / self.total:.0f}%)"
        if self.total and rate > 0 and self.done < self.total:
            # While the listing goes on, the ETA is for what is listed so far: a lower bound.
            text += f", ETA {'' if self.listing_done else '>= '}{duration((self.total - self.done) / rate)}"
        return text

    def report(self) -> None:
        self.last = time.monotonic()
        self.log(self.message())

    def close(self, report: bool = True) -> None:
        """The bar closed; with `report`, a last log line (the totals and the rate)."""
        self.listing_done = True
        if self.bar is not None:
            self.bar.close()
        if report:
            self.report()
