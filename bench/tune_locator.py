"""Choose the locator's constants (`locate:` in the spec) on the validation split, never the test split.

Over a published model in $GEOSOLVER_HOME (after `make run`): the validation photos are located with the
training rows as the image neighbours (the validation rows themselves are kept out), for every
combination of vote_km x vote_temperature x vote_weight on a small grid. Prints one JSON line per
combination (median km and mean GeoGuessr points on the validation split), best last, with the spec's
current settings marked.

    python -m bench.tune_locator [--spec my.yaml]
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import torch

from geosolver_data.model_spec import LocateConfig, load_spec
from geosolver_data.store.home import Home, working_home
from geosolver_model import stages
from geosolver_model.evaluation.metrics import geo_metrics
from geosolver_model.evaluation.test_sets import dataset_split
from geosolver_model.retrieval.embed import load_embeddings
from geosolver_model.retrieval.gallery import gallery_embeddings, spec_gallery
from geosolver_model.retrieval.index import flat_index
from geosolver_model.retrieval.locate import Locator

GRID = {"vote_km": (5.0, 25.0, 100.0, 400.0), "vote_temperature": (0.01, 0.05, 0.2),
        "vote_weight": (0.0, 0.25, 0.5, 0.75, 1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", help="the spec (default: $GEOSOLVER_SPEC or the demo)")
    args = parser.parse_args()
    spec, home = load_spec(args.spec), Home(working_home(None))
    model = home.models.latest()
    dataset_dir = stages.dataset_of(home, model)
    net = stages.published_model(spec, home, model).eval()
    meta, vectors = load_embeddings(stages.embed(spec, home, model, log=lambda _: None).files, ("train",))
    gallery = spec_gallery(spec.model, dataset_dir)
    gal_emb = gallery_embeddings(net, torch.as_tensor(gallery, device=net.device)).cpu().numpy()
    locator = Locator(net, flat_index(vectors), meta.select(["image_id", "lat", "lon"]).to_pydict(),
                      flat_index(gal_emb), {"lat": gallery[:, 0].tolist(), "lon": gallery[:, 1].tolist()})
    val = dataset_split(dataset_dir, "validation")
    with torch.no_grad():
        img = torch.cat([net.encode_images(torch.stack([net.pixels(im) for im in batch]))
                         for batch in _batches(list(val.images(net.ingest)), 64)])
    rows = []
    for values in itertools.product(*GRID.values()):
        locator.settings = LocateConfig(**dict(zip(GRID, values, strict=True)))
        guesses = np.array([r.latlon[0] for r in locator.rank_embedded(img, spec.model.top_k, spec.index.neighbours)])
        m = geo_metrics(guesses, val.latlon, val.country)
        rows.append({**locator.settings.model_dump(), "median_km": m["median_km"],
                     "geoguessr_score": m["geoguessr_score"], "current": locator.settings == spec.locate})
    rows.sort(key=lambda r: (-r["median_km"], r["geoguessr_score"]))
    for row in rows:
        print(json.dumps({"model": model.version, "val_photos": val.size, **row}), flush=True)


def _batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


if __name__ == "__main__":
    main()
