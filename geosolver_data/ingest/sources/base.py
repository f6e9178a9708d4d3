"""What every source provides to the ingest engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable

from geosolver_data.errors import GeosolverError
from geosolver_data.ingest.candidates import Candidate, FinishedIds
from geosolver_data.ingest.fetch import Fetcher, FetchPolicy
from geosolver_data.spec import HttpSettings, SourceSpec


class SourceError(GeosolverError, RuntimeError):
    """A source that cannot be read at all (bad token, missing file): the run stops with this message."""


def fetch_policy(src: SourceSpec, max_bytes: int) -> FetchPolicy:
    return FetchPolicy(**{key: getattr(src, key) for key in HttpSettings.model_fields}, max_bytes=max_bytes)


class Source:
    """Lists candidates for one region. Remote sources set `fetch_policy` and use the fetcher."""

    owns_strays = True  # this region records candidates that belong to no region
    fetch_policy: FetchPolicy | None = None
    complete = True  # every listing request was answered; False keeps the watermark where it was
    # Ids earlier runs finished, set by the engine before listing: a source may list those as a bare
    # Candidate(image_id) (all the engine reads of them), or many at once as FinishedIds, instead of
    # building each in full.
    finished: set[str] | frozenset[str] = frozenset()

    def candidates(self, fetcher: Fetcher | None) -> AsyncIterator[Candidate | FinishedIds]:
        raise NotImplementedError

    async def refresh_url(self, fetcher: Fetcher, candidate: Candidate) -> str | None:
        """A fresh URL for a candidate whose signed URL expired; None when the source cannot."""
        return None


class ListedSource(Source):
    """A source whose candidates are known up front (folders, lists, archives)."""

    def __init__(self, items: Iterable[Candidate] | Callable[[set[str] | frozenset[str]],
                                                             Iterable[Candidate | FinishedIds]],
                 owns_strays: bool, policy: FetchPolicy | None = None) -> None:
        self.items = items  # or a function of the finished ids that lists them
        self.owns_strays = owns_strays
        self.fetch_policy = policy

    async def candidates(self, fetcher: Fetcher | None) -> AsyncIterator[Candidate | FinishedIds]:
        for item in self.items(self.finished) if callable(self.items) else self.items:
            yield item
