"""The model stages the Dagster assets call: fine-tune (every objective), evaluate, embed every shard row,
and build the image and GPS indexes. Each publishes a versioned artifact (geosolver_data.store)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from geosolver_data.gazetteer import load_gazetteer
from geosolver_data.geo import h3_cells
from geosolver_data.model_spec import Spec
from geosolver_data.store.artifact import Artifact
from geosolver_data.store.atomic import write_json, write_text
from geosolver_data.store.home import Home
from geosolver_data.store.manifests import ModelManifest, read_dataset_manifest
from geosolver_model.evaluation.card import model_card
from geosolver_model.evaluation.evaluate import (
    error_plot,
    errors_km,
    evaluate,
    locator_predictor,
    markdown_table,
    predictions_table,
    retrieval_predictor,
    zeroshot_predictor,
)
from geosolver_model.evaluation.test_sets import TestSet, dataset_split, dataset_test_split, public_benchmarks
from geosolver_model.evaluation.validation import validator
from geosolver_model.evaluation.zeroshot import ZeroShot
from geosolver_model.names import LOCATOR, PREDICTIONS, PUBLISHED
from geosolver_model.net import device as devices
from geosolver_model.net.clip import load_clip
from geosolver_model.net.hub import base_commit
from geosolver_model.net.model import GeoRetriever
from geosolver_model.retrieval.embed import EmbeddingSet, embed_dataset, embedding_files, load_embeddings
from geosolver_model.retrieval.gallery import gallery_embeddings, spec_gallery
from geosolver_model.retrieval.index import flat_index, write_index
from geosolver_model.retrieval.locate import Locator
from geosolver_model.retrieval.published import dataset_of, intact_model, load_geolocator, published_model
from geosolver_model.train.loop import build_model, save_final, train
from geosolver_model.train.shard_stream import dataset_image_spec

Log = Callable[[str], None]
# 2: evaluations carry predictions.parquet; 3: the shipped locator is a comparator, identical weights are
# scored once (an older evaluation is run again, once)
EVAL_FORMAT = 3

# What decides a model's weights, declared once: the code in the folders that make them (net/: the network,
# its image loader and precision; train/: the loop, the losses, the shard stream) and the model settings,
# less those that only matter when the model is used. A change anywhere else (the CLI, retrieval,
# evaluation, the settings' docstrings) keeps the model version, so nothing is retrained or re-embedded.
WEIGHTS_FOLDERS = ("net", "train")
USE_ONLY_SETTINGS = frozenset({"gallery_resolution", "gallery", "top_k", "eval_max_images"})
# Where the stages run: changes neither a model's version nor an evaluation's.
RUNTIME_SETTINGS = frozenset({"device"})


def _hash(key: object) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def code_version(package: Path = Path(__file__).parent) -> str:
    """A hash of every Python file under WEIGHTS_FOLDERS: changed training code means a new model version
    (a file added there counts without anyone listing it)."""
    digest = hashlib.sha256()
    for folder in WEIGHTS_FOLDERS:
        for path in sorted((package / folder).rglob("*.py")):
            digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def model_version(spec: Spec, dataset_version: str, base_commit: str | None = None) -> str:
    """Same inputs, same version: dataset version, the settings that shape training, training code, and the
    commit a Hub base resolved to (a moved branch is another base)."""
    settings = {k: v for k, v in spec.model.model_dump().items() if k not in USE_ONLY_SETTINGS | RUNTIME_SETTINGS}
    settings["nproc"] = spec.training_processes  # what it trained with (left out, it follows compute.gpus)
    key = {"dataset": [spec.name, dataset_version], "model": settings, "code": code_version()}
    if base_commit is not None:
        key["base_commit"] = base_commit
    return _hash(key)


def _train_objective(spec: Spec, dataset_dir: Path, objective: str, run_dir: Path, log: Log) -> dict:
    """Train one objective into run_dir/final (in-process, or under torchrun when nproc > 1)."""
    final = run_dir / "final"
    processes = spec.training_processes
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
               "-m", "geosolver_model.train_cli", "--dataset", str(dataset_dir), "--objective", objective,
               "--run-dir", str(run_dir), "--spec-json", json.dumps(spec.model.model_dump())]
        log(f"{objective}: torchrun with {processes} processes")
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return json.loads((final / "train.json").read_text())
    validate = validator(spec.model, dataset_dir) if spec.model.val_every else None
    return save_final(train(spec.model, dataset_dir, objective, run_dir, log, validate=validate), final)


def finetune(spec: Spec, home: Home, dataset_version: str, log: Log = print) -> Artifact:
    """Train every objective in the spec and publish models/<version>/ (skipped if already published)."""
    dataset_dir = home.datasets(spec.name).require_intact(dataset_version, deep=False).path
    commit = base_commit(spec.model.base, spec.model.revision)  # None for tiny or a local folder
    version = model_version(spec, dataset_version, commit)
    if home.models.exists(version):
        log(f"model {version} already published for these inputs")
    runs = home.training_runs / version

    def build(staging: Path) -> dict:
        objectives = {}
        for name, (objective, variant) in training_runs(spec).items():
            objectives[name] = _train_objective(variant, dataset_dir, objective, runs / name, log)
            shutil.copytree(runs / name / "final", staging / "objectives" / name)
        shutil.copytree(staging / "objectives" / spec.model.objectives[0], staging / PUBLISHED)
        manifest = {"created_at": _now(), "version": version,
                    "dataset": {"name": spec.name, "version": dataset_version}, "base": spec.model.base,
                    "base_revision": spec.model.revision, "base_commit": commit,
                    "published_objective": spec.model.objectives[0], "model_spec": spec.model.model_dump(),
                    "code_version": code_version(), "objectives": objectives}
        _write_cards(spec, dataset_dir, staging, ModelManifest.model_validate(manifest), log)
        return manifest

    model = home.models.publish(build, version)
    shutil.rmtree(runs, ignore_errors=True)  # checkpoints only serve resumption of this version
    return model


def training_runs(spec: Spec) -> dict[str, tuple[str, Spec]]:
    """What finetune trains: every objective; with `compare_location_init`, the published objective
    again from the other location init, named `<objective>@<init>`."""
    runs = {objective: (objective, spec) for objective in spec.model.objectives}
    if spec.model.compare_location_init:
        other = "random" if spec.model.location_init == "geoclip" else "geoclip"
        variant = spec.model_copy(update={"model": spec.model.model_copy(update={"location_init": other})})
        runs[f"{spec.model.objectives[0]}@{other}"] = (spec.model.objectives[0], variant)
    return runs


def _write_cards(spec: Spec, dataset_dir: Path, staging: Path, manifest: ModelManifest, log: Log) -> None:
    """Each saved model folder gets its README.md, with its figures on the dataset's validation split
    (each trained model scored once: the published folder holds the first objective's weights)."""
    val = dataset_split(dataset_dir, "validation", spec.model.eval_max_images)
    gallery = spec_gallery(spec.model, dataset_dir)
    runs = training_runs(spec)
    scored: dict[str, dict | None] = {}
    hub = (*((spec.publish.dataset.repo,) if spec.publish.dataset else ()), *sorted({s.hub for s in spec.sources
                                                                                    if s.hub}))
    published_to = spec.publish.model.repo if spec.publish.model else ""
    for name, (objective, _) in runs.items():
        folder = staging / "objectives" / name
        metrics = None
        if val.size:
            predictor = retrieval_predictor(load_geolocator(spec, folder), gallery, spec.model.top_k)
            metrics = evaluate({name: predictor}, [val], lambda _: None)[0][val.name][name]
            log(f"{name} on the validation split: median {metrics['median_km']} km")
        scored[name] = metrics
        write_text(folder / "README.md", model_card(manifest, objective, metrics, f"objectives/{name}", hub))
    first = spec.model.objectives[0]
    write_text(staging / PUBLISHED / "README.md", model_card(manifest, first, scored[first], PUBLISHED, hub,
                                                             published_to))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def eval_version(model: Artifact, tests: list[TestSet], spec: Spec) -> str:
    """Same model, same test sets, same settings: same evaluation (it is not run again)."""
    settings = {k: spec.model.model_dump()[k] for k in sorted(USE_ONLY_SETTINGS)}
    return _hash({"format": EVAL_FORMAT, "model": model.version, "tests": [t.fingerprint for t in tests],
                  "settings": settings, "objectives": list(spec.model.objectives), "zeroshot_base": spec.model.base,
                  "zeroshot_revision": spec.model.revision,
                  "locate": spec.locate.model_dump(), "neighbours": spec.index.neighbours})


def _history(home: Home, model_version: str) -> list[dict]:
    """Other model versions' published median error on the dataset test split, oldest first."""
    rows = []
    for earlier in home.evals.all():
        if earlier.info.model_version != model_version:
            rows.append({"model": earlier.info.model_version, "created_at": earlier.info.created_at,
                         "median_km": earlier.info.dataset_test_median_km})
    return rows


def evaluate_model(spec: Spec, home: Home, model: Artifact, log: Log = print) -> Artifact:
    """Every comparator on every test set, published as evals/<version>/ (eval.json, eval.md,
    errors.png, and predictions.parquet: every comparator's guess for each dataset test image); the
    model's own folder is never touched."""
    dataset_dir = dataset_of(home, model)
    intact_model(home, model)
    tests = [dataset_test_split(dataset_dir, spec.model.eval_max_images),
             *public_benchmarks(home.benchmarks, spec.model.eval_max_images)]

    def build(staging: Path) -> dict:
        gallery = spec_gallery(spec.model, dataset_dir)
        log(f"gallery: {len(gallery)} locations ({', '.join(spec.model.gallery)})")
        top_k, dev = spec.model.top_k, spec.model.device
        untrained = build_model(spec.model, dataset_image_spec(dataset_dir)).to(devices.resolve(dev))
        untrained.precision = spec.model.precision
        comparators = {
            "untrained": retrieval_predictor(untrained, gallery, top_k),
            "zeroshot_streetclip": zeroshot_predictor(ZeroShot(*load_clip(spec.model.base, spec.model.revision), dev,
                                                               spec.model.precision)),
        }
        published = model.info.published_objective or spec.model.objectives[0]
        for name in model.info.objectives:  # the published folder is the first objective's weights
            net = load_geolocator(spec, model.path / "objectives" / name).eval()
            gal_emb = gallery_embeddings(net, torch.as_tensor(gallery, device=net.device))
            comparators[name] = retrieval_predictor(net, gallery, top_k, gal_emb)
            if name == published:  # the locator runs the same net over the same gallery embeddings
                locator = _in_memory_locator(spec, home, model, net, gallery, gal_emb)
        comparators[LOCATOR] = locator_predictor(locator, top_k, spec.index.neighbours)
        results, guesses = evaluate(comparators, tests, log)
        for by_comparator in results.values():  # the published weights: scored once, reported under both names
            by_comparator[PUBLISHED] = by_comparator[published]
        guesses[PUBLISHED] = guesses[published]
        results = {**results, "model_version": model.version, "gallery_size": len(gallery),
                   "history": _history(home, model.version), **location_init_comparison(spec, model, results)}
        write_json(staging / "eval.json", results)
        write_text(staging / "eval.md", markdown_table(results))
        plotted = {k: v for k, v in guesses.items() if k != published}  # one curve for the published weights
        error_plot(errors_km(plotted, tests[0]), staging / "errors.png", f"model {model.version} on {tests[0].name}")
        pq.write_table(predictions_table(guesses, tests[0]), staging / PREDICTIONS)
        return {"created_at": _now(), "model_version": model.version, "dataset": model.info.dataset.model_dump(),
                "test_sets": {t.name: {"size": t.size, "fingerprint": t.fingerprint} for t in tests},
                "dataset_test_median_km": results["dataset_test"][PUBLISHED]["median_km"]}

    return home.evals.publish(build, eval_version(model, tests, spec))


def _in_memory_locator(spec: Spec, home: Home, model: Artifact, net: GeoRetriever, gallery: np.ndarray,
                       gallery_emb: torch.Tensor) -> Locator:
    """The locator `predict` opens, over exact in-memory indexes of the same vectors: the published net's
    gallery embeddings, and the reference rows' (train + val) image embeddings (embedded once, reused by
    image_embeddings)."""
    meta, vectors = load_embeddings(embed(spec, home, model, log=lambda _: None).files, ("train", "validation"))
    return Locator(net, flat_index(vectors), meta.select(["image_id", "lat", "lon"]).to_pydict(),
                   flat_index(gallery_emb.cpu().numpy()),
                   {"lat": gallery[:, 0].tolist(), "lon": gallery[:, 1].tolist()}, settings=spec.locate)


def location_init_comparison(spec: Spec, model: Artifact, results: dict) -> dict:
    """With `compare_location_init`: the published objective from random and from GeoCLIP's location
    encoder, same steps and seed: the final test median, and the steps each took to reach the median
    validation error random init ends with (from the training curves; `model.val_every`)."""
    if not spec.model.compare_location_init:
        return {}
    objective = spec.model.objectives[0]
    other = next(n for n in model.info.objectives if n.startswith(f"{objective}@"))
    runs = {spec.model.location_init: objective, other.split("@", 1)[1]: other}
    curves = {init: [c for c in model.info.objectives[name].curve if c.get("val_median_km") is not None]
              for init, name in runs.items()}
    target = curves["random"][-1]["val_median_km"] if curves["random"] else None
    summary = {}
    for init, name in runs.items():
        reached = [c["step"] for c in curves[init] if target is not None and c["val_median_km"] <= target]
        summary[init] = {"comparator": name, "test_median_km": results["dataset_test"][name]["median_km"],
                         "final_val_median_km": curves[init][-1]["val_median_km"] if curves[init] else None,
                         "steps_to_random_final_val_median": reached[0] if reached else None}
    return {"location_init": {"objective": objective, "target_val_median_km": target, **summary}}


def eval_results(evaluation: Artifact) -> dict:
    return json.loads((evaluation.path / "eval.json").read_text())


def regressions(current: dict, tolerance: float) -> list[str]:
    """The published model's median error against the previous model version's, per test set."""
    previous = [h for h in current.get("history", []) if h.get("median_km") is not None]
    if not previous:
        return []
    before = previous[-1]["median_km"]
    now = current["dataset_test"][PUBLISHED]["median_km"]
    if now is None:  # no test rows: nothing was measured, nothing can have regressed
        return []
    if now > before * (1 + tolerance):
        return [f"median error {now} km vs {before} km for model {previous[-1]['model']} (> {tolerance:.0%} worse)"]
    return []


def winner(results: dict, objectives: tuple[str, ...]) -> str:
    """The objective with the lowest median error on the dataset's test split."""
    return min(objectives, key=lambda o: results["dataset_test"].get(o, {}).get("median_km") or np.inf)


MAX_QUERIES = 200  # held-out queries that tune and measure each index


def embed(spec: Spec, home: Home, model: Artifact, log: Log = print) -> EmbeddingSet:
    """Embed what is not embedded yet (nothing, and no model load, on a rerun), on the spec's device."""
    return embed_dataset(lambda: published_model(spec, home, model), dataset_of(home, model),
                         home.embeddings(model.version), log)


def coverage_problems(home: Home, model: Artifact[ModelManifest]) -> list[str]:
    """Embedding rows must be exactly the dataset's rows, each once."""
    manifest = read_dataset_manifest(dataset_of(home, model))
    files = embedding_files(home.embeddings(model.version), manifest)
    missing = [f.name for f in files if not f.exists()]
    if missing:
        return [f"no embeddings for {len(missing)} shard(s): {missing[:3]}"]
    ids = pa.concat_tables([pq.read_table(f, columns=["image_id"]) for f in files]).column("image_id")
    problems = []
    if len(ids) != manifest.rows:
        problems.append(f"{len(ids)} embeddings for {manifest.rows} rows")
    if len(ids.unique()) != len(ids):
        problems.append(f"{len(ids) - len(ids.unique())} image ids embedded more than once")
    return problems


def _queries(test: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Held-out queries: test-split image embeddings, else a sample of the indexed vectors."""
    if len(test) == 0:
        test = fallback[np.random.default_rng(0).choice(len(fallback), min(len(fallback), MAX_QUERIES), replace=False)]
    return test[:MAX_QUERIES]


def _publish_index(spec: Spec, home: Home, series: str, model: Artifact, key: dict,
                   make: Callable[[], tuple[np.ndarray, pa.Table, np.ndarray]]) -> Artifact:
    """An index version is a hash of what it is built from; `make` runs only for a new one."""
    version = _hash({"kind": series, "model": model.version, "dataset": model.info.dataset.version,
                     "index": spec.index.model_dump(), **key})

    def build(staging: Path) -> dict:
        vectors, ids, queries = make()
        return {"kind": series, "created_at": _now(), "model_version": model.version,
                "dataset": model.info.dataset.model_dump(), **key,
                **write_index(staging, vectors, ids, queries, spec.index,
                              gpu=devices.resolve(spec.model.device).type == "cuda")}

    return home.indexes(series).publish(build, version)


def image_index(spec: Spec, home: Home, model: Artifact, embeddings: EmbeddingSet) -> Artifact:
    """Image -> image kNN over the reference rows (train + val: the test split stays out of the
    index, it is what we evaluate on)."""
    def make() -> tuple[np.ndarray, pa.Table, np.ndarray]:
        meta, vectors = load_embeddings(embeddings.files)
        is_test = np.asarray(meta.column("split").to_pylist()) == "test"
        reference = vectors[~is_test]
        return reference, meta.filter(pa.array(~is_test)), _queries(vectors[is_test], reference)

    return _publish_index(spec, home, "image", model, {}, make)


@torch.no_grad()
def gps_index(spec: Spec, home: Home, model: Artifact, embeddings: EmbeddingSet) -> Artifact:
    """Location-encoder embeddings of the GPS gallery (train locations, one per H3 cell)."""
    res = spec.model.gallery_resolution

    def make() -> tuple[np.ndarray, pa.Table, np.ndarray]:
        gallery = spec_gallery(spec.model, dataset_of(home, model))
        net = published_model(spec, home, model)
        vectors = gallery_embeddings(net, torch.as_tensor(gallery, device=net.device)).cpu().numpy()
        gaz = load_gazetteer()
        nearest = gaz.nearest(gallery[:, 0], gallery[:, 1])
        ids = pa.table({"lat": gallery[:, 0].astype(np.float64), "lon": gallery[:, 1].astype(np.float64),
                        f"h3_r{res}": pa.array(h3_cells(gallery[:, 0], gallery[:, 1], [res])[res], pa.uint64()),
                        "country": gaz.country[nearest].tolist(), "place": gaz.name[nearest].tolist()})
        return vectors, ids, _queries(load_embeddings(embeddings.files, ("test",))[1], vectors)

    return _publish_index(spec, home, "gps", model, {"gallery_resolution": res}, make)
