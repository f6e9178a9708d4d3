"""The training-time view of progress: the median error on the validation split, sharded over DDP ranks.

Every rank scores its share of the split (rows rank, rank + world, ...) on its own device and the
errors are gathered, so no rank waits idle in a collective while another validates (a long rank-0-only
validation ran into NCCL's timeout), and N GPUs validate N times faster.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geosolver_data.geo import haversine_km
from geosolver_data.model_spec import ModelConfig
from geosolver_model.evaluation.evaluate import retrieval_predictor, run_predictor
from geosolver_model.evaluation.metrics import distance_metrics
from geosolver_model.evaluation.test_sets import dataset_split
from geosolver_model.net.model import GeoRetriever
from geosolver_model.retrieval.gallery import spec_gallery
from geosolver_model.train import distributed as D
from geosolver_model.train.loop import Validate


def val_errors_km(model: GeoRetriever, version_dir: Path, spec: ModelConfig, gallery: np.ndarray) -> np.ndarray:
    """This rank's share of the validation split scored, then every rank's errors (km), in rank order."""
    val = dataset_split(version_dir, "validation", spec.eval_max_images, D.rank(), D.world_size())
    pred = run_predictor(retrieval_predictor(model, gallery, spec.top_k), val)
    return D.gather_numpy(haversine_km(pred[:, 0], pred[:, 1], val.latlon[:, 0], val.latlon[:, 1]))


def validator(spec: ModelConfig, version_dir: Path) -> Validate:
    """What `train` calls every `val_every` steps; the gallery is built once."""
    gallery = spec_gallery(spec, version_dir)

    def validate(model: GeoRetriever) -> dict[str, float] | None:
        km = val_errors_km(model, version_dir, spec, gallery)
        return distance_metrics(km) if len(km) else None

    return validate
