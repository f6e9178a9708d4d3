"""Asset checks. Blocking ones stop everything downstream of a failing asset."""

import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from geosolver_data import validate
from geosolver_model import artifacts, index_stages
from geosolver_model import stages as model_stages
from pipelines.assets import dataset_shards, embedding_index, geolocation_eval, gps_gallery_index, image_embeddings
from pipelines.resources import GeosolverResource

REGRESSION_TOLERANCE = 0.10


def _result(problems: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": len(problems), "first_problems": dg.MetadataValue.md(
            "\n".join(f"- {p}" for p in problems[:20]) or "none")},
    )


def _latest(geosolver: GeosolverResource) -> Path:
    layout = geosolver.layout()
    version = layout.latest_version()
    if version is None:
        raise dg.Failure("no dataset version has been published yet")
    return layout.version_dir(version)


def _shard_check(name: str, description: str,
                 find: Callable[[Path, GeosolverResource], list[str]]) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=dataset_shards, name=name, description=description, blocking=True)
    def _check(geosolver: GeosolverResource) -> dg.AssetCheckResult:
        return _result(find(_latest(geosolver), geosolver))

    return _check


manifest_matches_files = _shard_check(
    "manifest_matches_files", "Every shard's size, sha256 and row count match manifest.json.",
    lambda d, g: validate.manifest_problems(d))
no_duplicate_sha256 = _shard_check(
    "no_duplicate_sha256", "No two rows share an image sha256.", lambda d, g: validate.duplicate_sha256(d))
no_near_duplicates = _shard_check(
    "no_near_duplicates", "No two rows are within the perceptual-hash threshold.",
    lambda d, g: validate.near_duplicates(d, g.spec().dedup.phash_threshold))
coordinates_valid = _shard_check(
    "coordinates_valid", "Every row has finite, in-range, non-(0,0) coordinates.",
    lambda d, g: validate.invalid_coordinates(d))
quotas_respected = _shard_check(
    "quotas_respected", "No cell holds more than the cap; no more rows than the target.",
    lambda d, g: validate.quota_problems(d, g.spec()))
splits_disjoint = _shard_check(
    "splits_disjoint", "No H3 block at the split resolution contributes to two splits.",
    lambda d, g: validate.split_overlap(d, g.spec()))


@dg.asset_check(asset=image_embeddings, blocking=True,
                description="Every row of the dataset version has exactly one embedding.")
def embeddings_cover_every_row(geosolver: GeosolverResource) -> dg.AssetCheckResult:
    home = geosolver.layout().home
    model = model_stages.latest_model(home)
    return _result(index_stages.coverage_problems(geosolver.spec(), home, model))


def _recall_check(asset: dg.AssetsDefinition, kind: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name="recall_at_target", blocking=True,
                    description="Measured recall@10 against exact search reaches index.recall_target.")
    def _check(geosolver: GeosolverResource) -> dg.AssetCheckResult:
        manifest = json.loads((artifacts.resolve(geosolver.layout().home, kind) / "manifest.json").read_text())
        target = geosolver.spec().index.recall_target
        ok = manifest["recall_at_10"] >= target
        return _result([] if ok else [f"recall@10 {manifest['recall_at_10']} < target {target}"])

    return _check


image_index_recall = _recall_check(embedding_index, "image")
gps_index_recall = _recall_check(gps_gallery_index, "gps")


@dg.asset_check(asset=geolocation_eval, blocking=False,
                description=f"The published model's median error is within {REGRESSION_TOLERANCE:.0%} of the "
                            "previous model version's on the dataset test split.")
def no_eval_regression(geosolver: GeosolverResource) -> dg.AssetCheckResult:
    model = model_stages.latest_model(geosolver.layout().home)
    current = json.loads((model.path / "eval.json").read_text())
    problems = model_stages.regressions(current, REGRESSION_TOLERANCE)
    return _result(problems)
