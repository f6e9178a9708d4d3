"""Geosolver's model library: StreetCLIP vision tower, location encoder, training, retrieval.

A plain library with no Dagster import. `Geolocator` and `GeoRetriever` are imported on first use,
so importing a light module of the package (e.g. `geosolver_model.names`) does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geosolver_model.geolocator import Geolocator
    from geosolver_model.net.model import GeoRetriever

__all__ = ["GeoRetriever", "Geolocator"]


def __getattr__(name: str) -> object:
    if name == "Geolocator":
        from geosolver_model.geolocator import Geolocator

        return Geolocator
    if name == "GeoRetriever":
        from geosolver_model.net.model import GeoRetriever

        return GeoRetriever
    raise AttributeError(f"module 'geosolver_model' has no attribute {name!r}")
