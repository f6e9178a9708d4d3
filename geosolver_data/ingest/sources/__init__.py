"""The sources, by their spec `type`: each factory turns a source's spec into its candidates for one region.

Folders and lists are read by every region (each keeps its own points; the first region also records
those of no region); a synthetic source writes and reads one subfolder per region; Mapillary and
Commons are searched within the region's box.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from geosolver_data.ingest.ledger import Ledger
from geosolver_data.ingest.sources.base import ListedSource, Source, fetch_policy
from geosolver_data.ingest.sources.commons import CommonsSource
from geosolver_data.ingest.sources.local import list_photos, local_candidates
from geosolver_data.ingest.sources.mapillary import MapillarySource
from geosolver_data.ingest.sources.osv5m import HubOsv5mSource, osv5m_candidates
from geosolver_data.ingest.sources.synthetic import synthesize_region
from geosolver_data.ingest.sources.urls import url_candidates
from geosolver_data.spec import DatasetSpec, Region, SourceSpec
from geosolver_data.store.home import DatasetLayout


@dataclass(frozen=True)
class Opening:
    """What a factory needs to open one source for one region's run."""

    spec: DatasetSpec
    layout: DatasetLayout
    src: SourceSpec
    region: str
    ledger: Ledger
    log: Callable[[str], None] = print

    @property
    def box(self) -> Region:
        return self.spec.region(self.region)

    @property
    def owns_strays(self) -> bool:
        """The first region records the candidates of a folder or list that lie in no region."""
        return self.region == self.spec.regions[0].name

    @property
    def max_bytes(self) -> int:
        return self.spec.image.max_file_bytes


def _synthetic(o: Opening) -> Source:
    root = Path(o.src.path) if o.src.path else o.layout.synthetic_photos(o.src.label)
    synthesize_region(root, o.box, o.spec.regions, o.src, threads=o.spec.workers)
    return ListedSource(local_candidates(list_photos(root, o.src.label, "folder", under=o.region)), True)


def _local(o: Opening) -> Source:
    photos = list_photos(Path(o.src.path).expanduser(), o.src.label, o.src.sequence_from)
    return ListedSource(local_candidates(photos), o.owns_strays)


def _mapillary(o: Opening) -> Source:
    since = o.ledger.state().get("watermark_ms") if o.src.watermark else None
    return MapillarySource(o.src, o.box, o.max_bytes, since_ms=since, log=o.log)


def _commons(o: Opening) -> Source:
    return CommonsSource(o.src, o.box, o.max_bytes, log=o.log)


def _urls(o: Opening) -> Source:
    return ListedSource(url_candidates(o.src, o.box, o.spec.regions, o.owns_strays), o.owns_strays,
                        fetch_policy(o.src, o.max_bytes))


def _osv5m(o: Opening) -> Source:
    if o.src.hub:
        return HubOsv5mSource(o.src, o.box, o.spec.regions, o.owns_strays, fetch_policy(o.src, o.max_bytes),
                              o.layout.archive_directories, o.log)
    return ListedSource(lambda finished: osv5m_candidates(o.src, o.box, o.spec.regions, o.owns_strays, finished),
                        o.owns_strays)


FACTORIES: dict[str, Callable[[Opening], Source]] = {
    "synthetic": _synthetic, "local": _local, "mapillary": _mapillary, "commons": _commons, "urls": _urls,
    "osv5m": _osv5m,
}


def open_source(opening: Opening) -> Source:
    """The source's candidates for one region."""
    return FACTORIES[opening.src.type](opening)
