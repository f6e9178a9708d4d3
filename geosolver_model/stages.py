"""The model stages the Dagster assets call: fine-tune (every objective) and evaluate."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from geosolver_data.layout import publish_dir, staging_dir, write_json, write_text
from geosolver_data.spec import DatasetSpec
from geosolver_model.base import load_clip
from geosolver_model.benchmarks import dataset_test_split, public_benchmarks
from geosolver_model.evaluate import error_plot, evaluate, markdown_table, retrieval_predictor, zeroshot_predictor
from geosolver_model.gallery import build_gallery
from geosolver_model.model import GeoRetriever
from geosolver_model.train import build_model, save_final, train
from geosolver_model.zeroshot import ZeroShot

Log = Callable[[str], None]
PUBLISHED = "finetuned"


@dataclass(frozen=True)
class ModelVersion:
    version: str
    path: Path
    manifest: dict
    new: bool


def code_version() -> str:
    """A hash of this package's source: changed training code means a new model version."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def model_version(spec: DatasetSpec, dataset_version: str) -> str:
    """Same inputs, same version: dataset version, model settings and training code."""
    key = {"dataset": [spec.name, dataset_version], "model": spec.model.model_dump(), "code": code_version()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def models_root(home: Path) -> Path:
    return home / "models"


def _train_objective(spec: DatasetSpec, dataset_dir: Path, objective: str, run_dir: Path, log: Log) -> dict:
    """Train one objective into run_dir/final (in-process, or under torchrun when nproc > 1)."""
    final = run_dir / "final"
    if spec.model.nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={spec.model.nproc}",
               "-m", "geosolver_model.train_cli", "--dataset", str(dataset_dir), "--objective", objective,
               "--run-dir", str(run_dir), "--spec-json", json.dumps(spec.model.model_dump())]
        log(f"{objective}: torchrun with {spec.model.nproc} processes")
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return json.loads((final / "train.json").read_text())
    return save_final(train(spec.model, dataset_dir, objective, run_dir, log), final)


def finetune(spec: DatasetSpec, home: Path, dataset_version: str, log: Log = print) -> ModelVersion:
    """Train every objective in the spec and publish models/<version>/ (skipped if already published)."""
    dataset_dir = home / "datasets" / spec.name / dataset_version
    version = model_version(spec, dataset_version)
    final = models_root(home) / version
    if (final / "manifest.json").exists():
        log(f"model {version} already published for these inputs")
        return ModelVersion(version, final, json.loads((final / "manifest.json").read_text()), new=False)
    runs = models_root(home) / ".runs" / version
    staging = staging_dir(models_root(home))
    objectives = {}
    for objective in spec.model.objectives:
        objectives[objective] = _train_objective(spec, dataset_dir, objective, runs / objective, log)
        shutil.copytree(runs / objective / "final", staging / "objectives" / objective)
    shutil.copytree(staging / "objectives" / spec.model.objectives[0], staging / PUBLISHED)
    manifest = {
        "version": version, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {"name": spec.name, "version": dataset_version}, "base": spec.model.base,
        "published_objective": spec.model.objectives[0], "model_spec": spec.model.model_dump(),
        "code_version": code_version(), "objectives": objectives,
    }
    write_json(staging / "manifest.json", manifest)
    new = publish_dir(staging, final)
    write_text(models_root(home) / "LATEST", version + "\n")
    shutil.rmtree(runs, ignore_errors=True)  # checkpoints only serve resumption of this version
    return ModelVersion(version, final, json.loads((final / "manifest.json").read_text()), new)


def latest_model(home: Path) -> ModelVersion:
    pointer = models_root(home) / "LATEST"
    if not pointer.exists():
        raise FileNotFoundError("finetuned_model has not been materialised: no model version is published")
    path = models_root(home) / pointer.read_text().strip()
    return ModelVersion(path.name, path, json.loads((path / "manifest.json").read_text()), new=False)


def _history(home: Path, current: str) -> list[dict]:
    """Earlier model versions' published median error on the dataset test split, oldest first."""
    rows = []
    for path in models_root(home).glob("*/eval.json"):
        if path.parent.name != current:
            data = json.loads(path.read_text()).get("dataset_test", {}).get(PUBLISHED, {})
            created = json.loads((path.parent / "manifest.json").read_text())["created_at"]
            rows.append({"model": path.parent.name, "created_at": created, "median_km": data.get("median_km")})
    return sorted(rows, key=lambda r: r["created_at"])


def evaluate_model(spec: DatasetSpec, home: Path, model: ModelVersion, log: Log = print) -> dict:
    """Every comparator on every test set; writes eval.json, eval.md and errors.png beside the manifest."""
    dataset_dir = home / "datasets" / spec.name / model.manifest["dataset"]["version"]
    gallery = build_gallery(dataset_dir, spec.model.gallery_resolution)
    log(f"gallery: {len(gallery)} locations at H3 resolution {spec.model.gallery_resolution}")
    comparators = {
        "untrained": retrieval_predictor(build_model(spec.model), gallery, spec.model.top_k),
        "zeroshot_streetclip": zeroshot_predictor(ZeroShot(*load_clip(spec.model.base))),
        PUBLISHED: retrieval_predictor(GeoRetriever.load(model.path / PUBLISHED), gallery, spec.model.top_k),
    }
    for objective in spec.model.objectives:
        comparators[objective] = retrieval_predictor(GeoRetriever.load(model.path / "objectives" / objective),
                                                     gallery, spec.model.top_k)
    tests = [dataset_test_split(dataset_dir, spec.model.eval_max_images),
             *public_benchmarks(home, spec.model.eval_max_images)]
    results, errors = evaluate(comparators, tests, log)
    results_meta = {**results, "model_version": model.version, "gallery_size": len(gallery),
                    "history": _history(home, model.version)}
    write_json(model.path / "eval.json", results_meta)
    write_text(model.path / "eval.md", markdown_table(results))
    error_plot(errors, model.path / "errors.png", f"model {model.version} on {tests[0].name}")
    return results_meta


def regressions(current: dict, tolerance: float) -> list[str]:
    """The published model's median error against the previous model version's, per test set."""
    previous = [h for h in current.get("history", []) if h.get("median_km") is not None]
    if not previous:
        return []
    before = previous[-1]["median_km"]
    now = current["dataset_test"][PUBLISHED]["median_km"]
    if now > before * (1 + tolerance):
        return [f"median error {now} km vs {before} km for model {previous[-1]['model']} (> {tolerance:.0%} worse)"]
    return []


def winner(results: dict, objectives: tuple[str, ...]) -> str:
    """The objective with the lowest median error on the dataset's test split."""
    return min(objectives, key=lambda o: results["dataset_test"][o]["median_km"] if o in results["dataset_test"]
               else np.inf)
