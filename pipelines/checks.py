"""Asset checks, built per dataset beside its assets. Blocking ones stop everything downstream of a
failing asset."""

import warnings
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from geosolver_data import stages
from geosolver_data.report import validate
from geosolver_data.report.markdown import cell
from geosolver_data.spec import DatasetSpec
from pipelines.assets import DatasetAssets
from pipelines.metadata import accounting_totals
from pipelines.partitions import ingest_unit
from pipelines.resources import GeosolverResource
from pipelines.scope import Scope

REGRESSION_TOLERANCE = 0.10


def _result(problems: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": len(problems), "first_problems": dg.MetadataValue.md(  # they quote image ids: text
            "\n".join(f"- {cell(p)}" for p in problems[:20]) or "none")},
    )


def _accounting(context: dg.AssetCheckExecutionContext, geosolver: GeosolverResource) -> dg.AssetCheckResult:
    spec = geosolver.spec()
    unit = ingest_unit(spec, context.partition_key)
    geosolver.pull_region(spec, unit)  # a remote home: the region's listing, tables and nothing else
    accounts = stages.region_accounting(spec, geosolver.layout(spec), unit.region, unit.part)
    problems = [f"{src}: {p}" for src, a in accounts.items() for p in a.problems()]
    result = _result(problems)
    return dg.AssetCheckResult(passed=result.passed, metadata={**result.metadata, **accounting_totals(accounts)})


def _latest(geosolver: GeosolverResource, spec: DatasetSpec) -> Path:
    layout = geosolver.layout(spec)
    version = layout.latest_version()
    if version is None:
        raise dg.Failure("no dataset version has been published yet")
    return layout.version_dir(version)


def _shard_problems(find: Callable[[Path, DatasetSpec], list[str]]) -> Callable:
    def check(_context: dg.AssetCheckExecutionContext, geosolver: GeosolverResource) -> dg.AssetCheckResult:
        spec = geosolver.spec()
        return _result(find(_latest(geosolver, spec), spec))

    return check


def _embeddings_cover_every_row(_context: dg.AssetCheckExecutionContext,
                                geosolver: GeosolverResource) -> dg.AssetCheckResult:
    from geosolver_model import stages as model_stages

    home = geosolver.store()
    return _result(model_stages.coverage_problems(home, home.models.latest()))


def _recall(kind: str) -> Callable:
    def check(_context: dg.AssetCheckExecutionContext, geosolver: GeosolverResource) -> dg.AssetCheckResult:
        recall = geosolver.store().indexes(kind).latest().info.recall_at_10
        target = geosolver.spec().index.recall_target
        return _result([] if recall >= target else [f"recall@10 {recall} < target {target}"])

    return check


def _no_eval_regression(_context: dg.AssetCheckExecutionContext,
                        geosolver: GeosolverResource) -> dg.AssetCheckResult:
    from geosolver_model import stages as model_stages

    current = model_stages.eval_results(geosolver.store().evals.latest())
    return _result(model_stages.regressions(current, REGRESSION_TOLERANCE))


def dataset_checks(scope: Scope, built: DatasetAssets,
                   partitions: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """Every check of one dataset's graph, reading its resource under `scope.resource_key`."""

    def check(asset: dg.AssetsDefinition, name: str, body: Callable, description: str, blocking: bool = True,
              **extra) -> dg.AssetChecksDefinition:
        return dg.asset_check(asset=asset, name=name, description=description, blocking=blocking,
                              required_resource_keys={scope.resource_key}, **extra)(scope.bind(body))

    # Partitioned asset checks are a preview feature in Dagster 1.13 (one check per region, rerunnable
    # from the UI); the warning would otherwise print on every load of the code location.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Specifying a partitions_def on an AssetCheckSpec", dg.PreviewWarning)
        accounting = check(
            built.raw_images, "every_listed_image_accounted_for", _accounting, partitions_def=partitions,
            description="Every candidate the region's last run listed is exactly once in raw_images or in the "
                        "rejects (with its reason, final or to retry): listed = stored + rejected + to retry.")
    return [
        accounting,
        *(check(built.dataset_shards, name, _shard_problems(find), description)
          for name, (description, find) in validate.CHECKS.items()),
        check(built.image_embeddings, "embeddings_cover_every_row", _embeddings_cover_every_row,
              "Every row of the dataset version has exactly one embedding."),
        check(built.embedding_index, "recall_at_target", _recall("image"),
              "Measured recall@10 against exact search reaches index.recall_target."),
        check(built.gps_gallery_index, "recall_at_target", _recall("gps"),
              "Measured recall@10 against exact search reaches index.recall_target."),
        check(built.geolocation_eval, "no_eval_regression", _no_eval_regression,
              f"The published model's median error is within {REGRESSION_TOLERANCE:.0%} of the previous model "
              "version's on the dataset test split.", blocking=False),
    ]

