"""Asset checks. Blocking ones stop everything downstream of a failing asset."""

import warnings
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from geosolver_data import stages
from geosolver_data.report import validate
from geosolver_data.spec import DatasetSpec
from pipelines.assets import (
    dataset_shards,
    embedding_index,
    geolocation_eval,
    gps_gallery_index,
    image_embeddings,
    raw_images,
)
from pipelines.metadata import accounting_totals
from pipelines.partitions import region_partitions
from pipelines.resources import GeosolverResource

REGRESSION_TOLERANCE = 0.10


def _result(problems: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": len(problems), "first_problems": dg.MetadataValue.md(
            "\n".join(f"- {p}" for p in problems[:20]) or "none")},
    )


def every_listed_image_accounted_for(context: dg.AssetCheckExecutionContext,
                                     geosolver: GeosolverResource) -> dg.AssetCheckResult:
    spec = geosolver.spec()
    accounts = stages.region_accounting(spec, geosolver.layout(spec), context.partition_key)
    problems = [f"{src}: {p}" for src, a in accounts.items() for p in a.problems()]
    result = _result(problems)
    return dg.AssetCheckResult(passed=result.passed, metadata={**result.metadata, **accounting_totals(accounts)})


# Partitioned asset checks are a preview feature in Dagster 1.13 (one check per region, rerunnable from
# the UI); the warning would otherwise print on every load of the code location.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Specifying a partitions_def on an AssetCheckSpec", dg.PreviewWarning)
    every_listed_image_accounted_for = dg.asset_check(
        asset=raw_images, partitions_def=region_partitions, blocking=True,
        description="Every candidate the region's last run listed is exactly once in raw_images or in the rejects "
                    "(with its reason, final or to retry): listed = stored + rejected + to retry.",
    )(every_listed_image_accounted_for)


def _latest(geosolver: GeosolverResource, spec: DatasetSpec) -> Path:
    layout = geosolver.layout(spec)
    version = layout.latest_version()
    if version is None:
        raise dg.Failure("no dataset version has been published yet")
    return layout.version_dir(version)


def _shard_check(name: str, description: str,
                 find: Callable[[Path, DatasetSpec], list[str]]) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=dataset_shards, name=name, description=description, blocking=True)
    def _check(geosolver: GeosolverResource) -> dg.AssetCheckResult:
        spec = geosolver.spec()
        return _result(find(_latest(geosolver, spec), spec))

    return _check


shard_checks = [_shard_check(name, description, find) for name, (description, find) in validate.CHECKS.items()]


@dg.asset_check(asset=image_embeddings, blocking=True,
                description="Every row of the dataset version has exactly one embedding.")
def embeddings_cover_every_row(geosolver: GeosolverResource) -> dg.AssetCheckResult:

    from geosolver_model import stages as model_stages

    home = geosolver.store()
    return _result(model_stages.coverage_problems(home, home.models.latest()))


def _recall_check(asset: dg.AssetsDefinition, kind: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name="recall_at_target", blocking=True,
                    description="Measured recall@10 against exact search reaches index.recall_target.")
    def _check(geosolver: GeosolverResource) -> dg.AssetCheckResult:
        manifest = geosolver.store().indexes(kind).latest().manifest
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
    from geosolver_model import stages as model_stages

    current = model_stages.eval_results(geosolver.store().evals.latest())
    return _result(model_stages.regressions(current, REGRESSION_TOLERANCE))
