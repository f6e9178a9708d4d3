"""What became of one candidate in a worker: stored (a raw_images row), rejected (with its reason),
another region's, or a signed URL to refresh. Small frozen types, so the engine matches on what it
got instead of on a tag; they cross the worker processes' pipes as they are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stored:
    """The image's raw_images row (geosolver_data.schemas.RAW_SCHEMA's columns)."""

    row: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    """Why the image is not stored. `remote`: its bytes came from a host, so unusable bytes may come good
    on a later run (whether the reject is final is decided when it is recorded)."""

    image_id: str
    source: str
    region: str
    reason: str
    detail: str
    remote: bool = False

    def row(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "source": self.source, "region": self.region, "reason": self.reason,
                "detail": self.detail}


@dataclass(frozen=True)
class Elsewhere:
    """Another region's image (or a stray that the region owning strays records): not this run's to keep."""


@dataclass(frozen=True)
class Refresh:
    """A signed URL expired (HTTP 403): the main process asks the source for a fresh one."""


ELSEWHERE, REFRESH = Elsewhere(), Refresh()
Outcome = Stored | Rejected | Elsewhere | Refresh
