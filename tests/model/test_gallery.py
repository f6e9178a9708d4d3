"""The gallery can hold the answer: a split-independent grid has a point near every test photo, where the
training locations (with whole-region split blocks, as the learn spec has) have none."""

import numpy as np

from geosolver_data.geo import haversine_km
from geosolver_data.model_spec import ModelConfig
from geosolver_model.evaluation.test_sets import dataset_test_split
from geosolver_model.retrieval.gallery import build_gallery, grid_gallery, spec_gallery


def _nearest_km(points: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    return haversine_km(points[:, None, 0], points[:, None, 1], gallery[None, :, 0], gallery[None, :, 1]).min(axis=1)


def test_the_grid_gallery_has_a_point_near_every_test_photo(learn_dataset) -> None:
    _, _, version_dir = learn_dataset
    test = dataset_test_split(version_dir).latlon
    grid = grid_gallery(5).astype(np.float64)
    assert 60_000 < len(grid) < 70_000 and np.all(np.abs(grid[:, 0]) <= 90)
    assert np.all(_nearest_km(test, grid) <= 25)  # acc@25km is not capped at zero
    train = build_gallery(version_dir, 5).astype(np.float64)
    assert np.median(_nearest_km(test, train)) > 100  # res-1 split blocks: the train gallery cannot answer
    both = spec_gallery(ModelConfig(gallery=("grid", "train"), gallery_resolution=5), version_dir)
    assert len(both) == len(grid) + len(train)
