"""Coordinates: validation, great-circle distance and H3 cells at several resolutions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from h3ronpy.vector import cells_to_coordinates, coordinates_to_cells

EARTH_RADIUS_KM = 6371.0088
_H3_RES_SHIFT = 52
_H3_RES_MASK = np.uint64(0xF << _H3_RES_SHIFT)
_CHUNK = 262_144


def invalid_coordinate_reason(lat: float | None, lon: float | None) -> str | None:
    """Why a coordinate is unusable, or None if it is fine. (0, 0) is the classic 'no fix' value."""
    if lat is None or lon is None or not (np.isfinite(lat) and np.isfinite(lon)):
        return "coordinates are missing or not finite"
    if abs(lat) > 90 or abs(lon) > 180:
        return f"coordinates out of range: lat={lat}, lon={lon}"
    if lat == 0 and lon == 0:
        return "coordinates are (0, 0), a null-island placeholder"
    return None


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in km between broadcastable arrays of degrees."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi, dlmb = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def cell_parent(cells: np.ndarray, resolution: int) -> np.ndarray:
    """Parents of H3 cells at a coarser resolution, by bit operations on the whole array.

    An H3 index stores its resolution in bits 52-55 and one 3-bit digit per resolution; a parent
    is the same index with the resolution lowered and the finer digits set to 7 (unused).
    """
    cells = np.asarray(cells, dtype=np.uint64)
    unused_digits = np.uint64((1 << (3 * (15 - resolution))) - 1)
    return (cells & ~_H3_RES_MASK) | np.uint64(resolution << _H3_RES_SHIFT) | unused_digits


def _cells_at(lat: np.ndarray, lon: np.ndarray, resolution: int) -> np.ndarray:
    return coordinates_to_cells(lat, lon, resolution).to_numpy().astype(np.uint64, copy=False)


def h3_cells(lat: np.ndarray, lon: np.ndarray, resolutions: tuple[int, ...] | list[int],
             threads: int = 2) -> dict[int, np.ndarray]:
    """H3 cells (uint64) of each point at every resolution: (N,) degrees -> {res: (N,)}.

    Only the finest resolution is computed from coordinates (vectorised in Rust by h3ronpy,
    in chunks on `threads` threads); coarser ones are derived with `cell_parent`.
    Coordinates must be valid (see `invalid_coordinate_reason`).
    """
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    finest = max(resolutions)
    bounds = range(0, len(lat), _CHUNK)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        parts = list(pool.map(lambda s: _cells_at(lat[s:s + _CHUNK], lon[s:s + _CHUNK], finest), bounds))
    fine = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    return {r: fine if r == finest else cell_parent(fine, r) for r in resolutions}



def cell_centres(cells: np.ndarray) -> np.ndarray:
    """H3 cells (uint64) -> (N, 2) float64 degrees (lat, lon) of their centres."""
    if not len(cells):
        return np.zeros((0, 2))
    batch = cells_to_coordinates(np.asarray(cells, dtype=np.uint64))
    return np.stack([np.asarray(batch.column("lat")), np.asarray(batch.column("lng"))], axis=1)
