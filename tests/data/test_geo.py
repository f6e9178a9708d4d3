import math

import h3
import numpy as np
import pytest

from geosolver_data.gazetteer import load_gazetteer
from geosolver_data.geo import cell_parent, h3_cells, haversine_km, invalid_coordinate_reason


def _points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-89.9, 89.9, n), rng.uniform(-180, 180, n)


def test_finest_resolution_matches_h3() -> None:
    lat, lon = _points(3000)
    cells = h3_cells(lat, lon, [2, 7])
    expected = [h3.str_to_int(h3.latlng_to_cell(a, b, 7)) for a, b in zip(lat, lon, strict=True)]
    assert cells[7].dtype == np.uint64
    assert cells[7].tolist() == expected


def test_coarser_resolutions_are_the_h3_parents_so_cells_nest() -> None:
    lat, lon = _points(3000, seed=1)
    cells = h3_cells(lat, lon, [0, 1, 3, 5, 9])
    for res in (0, 1, 3, 5):
        expected = [h3.str_to_int(h3.cell_to_parent(h3.int_to_str(int(c)), res)) for c in cells[9]]
        assert cells[res].tolist() == expected
        assert all(h3.is_valid_cell(h3.int_to_str(int(c))) for c in cells[res][:50])


def test_parent_of_a_parent_is_the_grandparent() -> None:
    lat, lon = _points(100, seed=2)
    fine = h3_cells(lat, lon, [8])[8]
    assert (cell_parent(cell_parent(fine, 4), 2) == cell_parent(fine, 2)).all()


def test_many_points_in_chunks_on_threads() -> None:
    lat, lon = _points(600_000, seed=3)
    cells = h3_cells(lat, lon, [4], threads=2)[4]
    for i in (0, 262_143, 262_144, 599_999):
        assert int(cells[i]) == h3.str_to_int(h3.latlng_to_cell(lat[i], lon[i], 4))


@pytest.mark.parametrize(("lat", "lon", "fragment"), [
    (float("nan"), 1.0, "not finite"),
    (None, 1.0, "missing"),
    (91.0, 0.5, "out of range"),
    (10.0, -180.5, "out of range"),
    (0.0, 0.0, "null-island"),
])
def test_invalid_coordinates_have_reasons(lat: float, lon: float, fragment: str) -> None:
    assert fragment in invalid_coordinate_reason(lat, lon)


def test_valid_coordinates_pass() -> None:
    assert invalid_coordinate_reason(0.0, 10.0) is None
    assert invalid_coordinate_reason(-90.0, 180.0) is None


def test_haversine_known_distances() -> None:
    paris_london = haversine_km(48.8566, 2.3522, 51.5074, -0.1278)
    assert abs(paris_london - 343.5) < 1.0
    half_equator = haversine_km(0.0, 0.0, 0.0, 180.0)
    assert abs(half_equator - math.pi * 6371.0088) < 1e-6


def test_gazetteer_countries_and_antimeridian() -> None:
    gaz = load_gazetteer()
    got = gaz.countries(np.array([48.8566, 40.7128, -33.8688, 35.6762, -41.29]),
                        np.array([2.3522, -74.006, 151.2093, 139.6503, 174.78]))
    assert got.tolist() == ["FR", "US", "AU", "JP", "NZ"]
    # Fiji straddles 180°: a point just east of it must not be matched by raw longitude distance
    assert gaz.countries(np.array([-16.8]), np.array([-179.9])).tolist() == ["FJ"]
