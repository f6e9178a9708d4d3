"""GeoCLIP warm start against random init, on the demo dataset: the published objective trained twice
with the same steps, seed and data, from random weights and from GeoCLIP's location encoder.

A toy proxy, not a claim about StreetCLIP: the demo's images are synthetic and its vision tower is the
tiny 336-px CLIP, so only the location side is pretrained here. What it shows is whether starting the
location encoder from GeoCLIP's weights reaches a given validation error in fewer steps.

    python -m bench.bench_warmstart [--steps 150] [--home DIR]

Prints JSON lines: the final test median of each start, and the steps each took to reach the
validation median that random init ends with (eval.json's `location_init`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

from geosolver_data import stages as data_stages
from geosolver_data.model_spec import parse_spec
from geosolver_data.spec import default_spec_path
from geosolver_data.store.home import Home
from geosolver_model import stages


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--home", type=Path, help="a home to build the demo dataset in (default: a scratch folder)")
    args = parser.parse_args()
    raw = yaml.safe_load(default_spec_path().read_text())
    raw["model"] |= {"embed_dim": 512, "loc_features": 256, "loc_hidden": 1024, "loc_layers": 3,  # GeoCLIP's sizes
                     "objectives": ["soft_haversine"], "location_init": "random", "compare_location_init": True,
                     "steps": args.steps, "val_every": 10}
    spec = parse_spec(raw)
    home = Home(args.home or Path(tempfile.mkdtemp(prefix="warmstart-")))
    started = time.perf_counter()
    dataset = data_stages.build_dataset(spec, home.dataset(spec.name), log=lambda _: None)
    emit(bench="dataset", version=dataset.version, rows=dataset.info.rows,
         seconds=round(time.perf_counter() - started, 1))
    started = time.perf_counter()
    model = stages.finetune(spec, home, dataset.version, log=lambda _: None)
    evaluation = stages.evaluate_model(spec, home, model, log=lambda _: None)
    comparison = stages.eval_results(evaluation)["location_init"]
    emit(bench="train_and_eval", seconds=round(time.perf_counter() - started, 1), steps=args.steps,
         model=model.version, eval=evaluation.version)
    for init in ("random", "geoclip"):
        emit(bench="warm_start", location_init=init, target_val_median_km=comparison["target_val_median_km"],
             **comparison[init])


if __name__ == "__main__":
    main()
