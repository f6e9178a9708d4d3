"""Names of one dataset's definitions in the code location. The default dataset (GEOSOLVER_SPEC's)
keeps the plain names (`raw_images`, job `ingest`, schedule `dataset_refresh`); a GeosolverDataset
component instance puts its prefix on every asset key, group, job, schedule and resource key, so
several datasets live side by side with separate lineage."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg

DATASET, MODEL, INDEX = "dataset", "model", "index"  # asset groups, in stage order
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Scope:
    prefix: str = ""

    def __post_init__(self) -> None:
        if self.prefix and not _NAME.match(self.prefix):
            raise ValueError(f"key_prefix {self.prefix!r}: letters, digits and _, starting with a letter")

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.prefix, name]) if self.prefix else dg.AssetKey(name)

    def name(self, name: str) -> str:
        """A job, schedule or group name."""
        return f"{self.prefix}_{name}" if self.prefix else name

    def group(self, kind: str) -> str:
        return self.name(kind)

    @property
    def resource_key(self) -> str:
        return self.name("geosolver") if self.prefix else "geosolver"

    def bind(self, body: Callable[[Any, Any], Any]) -> Callable[[Any], Any]:
        """An asset or check body `(context, resource)` as Dagster calls it, `(context)`, with this
        dataset's resource."""

        def run(context):  # unannotated: Dagster accepts only its own context types here
            return body(context, getattr(context.resources, self.resource_key))

        return run


DEFAULT = Scope()
