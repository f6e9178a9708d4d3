"""The packaged example specs: each printed by `geosolver spec --example` validates as it is, says what it
needs and costs, and one (a Mapillary city) builds end to end against the loopback Mapillary with the
model swapped for the tiny one: dataset, model, embeddings, indexes, evaluation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from geosolver_data import stages as data_stages
from geosolver_data.model_spec import parse_spec
from geosolver_data.recipes import recipe_names, recipe_path
from geosolver_data.store.home import DatasetLayout, Home
from tests.data.test_remote_sources import NORTH, SOURCE_KNOBS, SOUTH, world

BIN = Path(sys.executable).parent
REAL_RUNS = ("osv5m-streetclip", "mapillary-city", "url-list", "photo-folder")


def test_every_recipe_prints_and_validates_as_it_is(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(BIN)}
    env.pop("GEOSOLVER_SPEC", None)
    listed = subprocess.run([str(BIN / "geosolver"), "spec", "--example"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and [line.split()[0] for line in listed.stdout.splitlines()] == recipe_names()
    assert set(REAL_RUNS) <= set(recipe_names())
    for name in recipe_names():
        printed = subprocess.run([str(BIN / "geosolver"), "spec", "--example", name], env=env, capture_output=True,
                                 text=True)
        assert printed.returncode == 0, printed.stderr
        (tmp_path / f"{name}.yaml").write_text(printed.stdout)
        checked = subprocess.run([str(BIN / "geosolver"), "--spec", str(tmp_path / f"{name}.yaml"), "spec"], env=env,
                                 capture_output=True, text=True)
        assert checked.returncode == 0, f"{name}: {checked.stderr}"
        if name in REAL_RUNS:
            header = printed.stdout.split("\nname:", 1)[0]
            assert all(f"# {part}:" in header for part in ("Needs", "Costs", "Run")), name
    wrong = subprocess.run([str(BIN / "geosolver"), "spec", "--example", "nope"], env=env, capture_output=True,
                           text=True)
    assert wrong.returncode == 2 and "mapillary-city" in wrong.stderr
    version = subprocess.run([str(BIN / "geosolver"), "--version"], env=env, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("geosolver 0.")


def test_the_mapillary_recipe_builds_end_to_end_against_the_loopback_api(mapillary, home: Path) -> None:
    from geosolver_model import stages as model_stages

    imagery, _ = mapillary
    imagery.add(*world(seed=5, n_north=60, n_south=30, faults=False))
    raw = yaml.safe_load(recipe_path("mapillary-city").read_text())
    raw["regions"] = [{"name": "north", "bbox": NORTH}, {"name": "south", "bbox": SOUTH}]  # where the fake's photos are
    raw["sources"] = [{**raw["sources"][0], **SOURCE_KNOBS, "tile_deg": 0.1}]
    raw["model"] = {**raw["model"], "base": "tiny", "embed_dim": 64, "loc_features": 64, "loc_hidden": 128,
                    "loc_layers": 2, "steps": 10, "batch_size": 8, "val_every": 5, "eval_max_images": 20}
    spec = parse_spec(raw)
    dataset = data_stages.build_dataset(spec, DatasetLayout(home, spec.name), log=lambda _: None)
    assert dataset.info.rows > 50 and set(dataset.info.splits) == {"train", "validation", "test"}

    store = Home(home)
    model = model_stages.finetune(spec, store, dataset.version, log=lambda _: None)
    embeddings = model_stages.embed(spec, store, model, log=lambda _: None)
    image = model_stages.image_index(spec, store, model, embeddings)
    gps = model_stages.gps_index(spec, store, model, embeddings)
    evaluation = model_stages.evaluate_model(spec, store, model, log=lambda _: None)
    results = model_stages.eval_results(evaluation)["dataset_test"]
    assert {"infonce", "locator", "zeroshot_streetclip"} <= set(results)
    assert image.info.model_version == gps.info.model_version == model.version
    assert model.info.dataset.version == dataset.version
