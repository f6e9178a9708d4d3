"""Assets, built per dataset by `dataset_assets` (the default dataset, GEOSOLVER_SPEC's, unprefixed;
each GeosolverDataset component instance under its own key prefix).

Dataset: raw_images -> deduplicated_images -> geocells -> balanced_dataset -> dataset_shards.
Model: dataset_shards -> finetuned_model -> geolocation_eval.
Index: finetuned_model -> image_embeddings -> embedding_index, gps_gallery_index."""

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import pyarrow.parquet as pq

from geosolver_data import stages
from geosolver_data.model_spec import ComputeConfig
from pipelines.compute import model_step_tags
from pipelines.metadata import (
    accounting_table,
    accounting_totals,
    balance_table,
    counts_table,
    history_table,
    human_bytes,
    inline_png,
    published_artifact,
    table_metadata,
)
from pipelines.partitions import ingest_unit
from pipelines.resources import GeosolverResource
from pipelines.scope import DATASET, INDEX, MODEL, Scope

# Downstream of ingest, assets rebuild on their own once their inputs have new materialisations and
# none is in progress: the automation sensor (sensors.py, running by default) evaluates this under the daemon.
automation = dg.AutomationCondition.eager()


def _raw_images(context: dg.AssetExecutionContext, geosolver: GeosolverResource) -> dg.MaterializeResult:
    """Photos of one region (or one sub-partition of it) from every source, fetched, decoded, resized,
    re-encoded and hashed once; failures go to rejects with their reason. Resumes from the ledger; a
    refresh fetches only what is new."""
    spec = geosolver.spec()
    unit = ingest_unit(spec, context.partition_key)
    geosolver.pull_region(spec, unit)  # a remote home: this region's (or part's) files only
    layout = geosolver.layout(spec)
    stats = stages.ingest_region(spec, layout, unit.region, log=context.log.info, part=unit.part)
    rejected = {f"{src}/{reason}": n for src, s in stats.items() for reason, n in s.rejected.items()}
    totals = {f"{src}/{reason}": n for src, s in stats.items() for reason, n in s.total_rejects.items()}
    accounts = {src: s.accounting for src, s in stats.items() if s.accounting is not None}
    return dg.MaterializeResult(metadata={
        # Every candidate this run listed for the region: listed = stored + rejected + to_retry.
        **accounting_totals(accounts),
        "accounting": dg.MetadataValue.md(accounting_table(accounts)),
        "ingested": sum(s.ingested for s in stats.values()),
        "rejected": sum(rejected.values()),
        "candidates": sum(s.candidates for s in stats.values()),
        "already_done": sum(s.already_done for s in stats.values()),
        "http_retries": sum(s.retries for s in stats.values()),
        "image_bytes": sum(s.bytes_written for s in stats.values()),
        "images_total": sum(s.total_rows for s in stats.values()),
        "rejects_total": sum(totals.values()),
        "rejects_by_reason": dg.MetadataValue.md(counts_table(rejected, "source/reason")),
        "rejects_total_by_reason": dg.MetadataValue.md(counts_table(totals, "source/reason")),
        "listing_complete": all(s.listing_complete for s in stats.values()),
        "path": dg.MetadataValue.path(str(layout.work / "raw_images" / unit.folder)),
    })


def _deduplicated_images(context: dg.AssetExecutionContext, geosolver: GeosolverResource) -> dg.MaterializeResult:
    """Exact, perceptual and same-place duplicates removed; every drop reported with its reason."""
    spec = geosolver.spec()
    layout = geosolver.layout(spec)
    stats = stages.deduplicate_dataset(spec, layout)
    return dg.MaterializeResult(metadata={
        **table_metadata(stats.kept, pq.read_schema(layout.dedup_kept)),
        "candidates": stats.candidates,
        "kept": stats.kept,
        "dropped": sum(stats.dropped.values()),
        "dropped_by_reason": dg.MetadataValue.md(counts_table(stats.dropped, "reason")),
        "dropped_report": dg.MetadataValue.path(str(layout.dedup_dropped)),
    })


def _geocells(context: dg.AssetExecutionContext, geosolver: GeosolverResource) -> dg.MaterializeResult:
    """H3 cells at every configured resolution and an ISO country code per image."""
    spec = geosolver.spec()
    layout = geosolver.layout(spec)
    stats = stages.assign_cells(spec, layout)
    return dg.MaterializeResult(metadata={
        **table_metadata(stats["rows"], pq.read_schema(layout.geocells)),
        "rows": stats["rows"],
        "countries": stats["countries"],
        "cells_by_resolution": dg.MetadataValue.md(counts_table(stats["cells"], "resolution")),
    })


def _balanced_dataset(context: dg.AssetExecutionContext, geosolver: GeosolverResource) -> dg.MaterializeResult:
    """Per-cell tempered quotas, deterministic selection, spatially disjoint train/validation/test splits."""
    spec = geosolver.spec()
    layout = geosolver.layout(spec)
    report = stages.balance_dataset(spec, layout)
    return dg.MaterializeResult(metadata={
        **table_metadata(report["after"]["images"], pq.read_schema(layout.balanced)),
        "rows": report["after"]["images"],
        "cells": report["after"]["cells"],
        "gini_before": report["before"]["gini"],
        "gini_after": report["after"]["gini"],
        "balance": dg.MetadataValue.md(balance_table(report)),
        "splits": dg.MetadataValue.json(report["splits"]),
        "split_fractions": dg.MetadataValue.json(report["split_fractions"]),
    })


def _dataset_shards(context: dg.AssetExecutionContext, geosolver: GeosolverResource) -> dg.MaterializeResult:
    """Parquet shards and manifest.json: one immutable dataset version, named by its content hash."""
    spec = geosolver.spec()
    published = stages.publish(spec, geosolver.layout(spec))
    m = published.info
    size = sum(s.bytes for s in m.shards)
    return published_artifact(published, {
        **table_metadata(m.rows, pq.read_schema(published.path / m.shards[0].path)),
        "shards": len(m.shards),
        "size": human_bytes(size),
        "size_per_image": human_bytes(size / max(1, m.rows)),
        "splits": dg.MetadataValue.json(m.splits),
        "coverage_map": inline_png(published.path / "coverage.png", "coverage map"),
    })


# The model and index assets import the model package (torch, transformers, faiss) inside their bodies:
# loading this code location, or running an ingest step, never pays for it, and an ingest-only
# install (without the `model` extra) runs raw_images.


def _finetuned_model(context: dg.AssetExecutionContext, geosolver: GeosolverResource) -> dg.MaterializeResult:
    """StreetCLIP vision tower + location encoder fine-tuned for retrieval, one folder per version."""
    from geosolver_model import stages as model_stages

    spec, home = geosolver.spec(), geosolver.store()
    model = model_stages.finetune(spec, home, stages.latest_dataset(home.dataset(spec.name)), log=context.log.info)
    from geosolver_model.evaluation.curves import curve_plot

    runs = model.info.objectives
    with tempfile.TemporaryDirectory() as scratch:
        curves = inline_png(curve_plot(runs, Path(scratch) / "curves.png", f"model {model.version}"), "training curves")
    figures: dict[str, float] = {}  # one number per key: Dagster's Plots tab charts each across materialisations
    for objective, run in runs.items():
        figures |= {f"final_loss_{objective}": run.final_loss, f"samples_per_s_{objective}": run.samples_per_s}
        validated = [c["val_median_km"] for c in run.curve if c.get("val_median_km") is not None]
        if validated:
            figures[f"val_median_km_{objective}"] = validated[-1]
    return published_artifact(model, {
        "dataset_version": model.info.dataset.version,
        "base": model.info.base,
        **figures,
        "training_curves": curves,
        "tensorboard_logdir": dg.MetadataValue.path(str(model.path / "objectives")),  # `tensorboard --logdir` it
    })


def _geolocation_eval(context: dg.AssetExecutionContext, geosolver: GeosolverResource) -> dg.MaterializeResult:
    """Distance accuracies, median km, GeoGuessr score and country accuracy against the comparators."""
    from geosolver_model import stages as model_stages
    from geosolver_model.evaluation import evaluate

    spec, home = geosolver.spec(), geosolver.store()
    model = home.models.latest()
    evaluation = model_stages.evaluate_model(spec, home, model, log=context.log.info)
    results = model_stages.eval_results(evaluation)
    test = results["dataset_test"]
    return published_artifact(evaluation, {
        "model_version": model.version,
        "median_km": test[model_stages.PUBLISHED]["median_km"],
        "median_km_untrained": test["untrained"]["median_km"],
        "median_km_locator": test[model_stages.LOCATOR]["median_km"],  # what predict and play answer
        "geoguessr_score": test[model_stages.PUBLISHED]["geoguessr_score"],
        "best_objective": model_stages.winner(results, spec.model.objectives),
        # two narrow tables with short column names, so every column fits the UI's metadata panel at 1500 px
        "distance_accuracy": dg.MetadataValue.md(evaluate.markdown_table(
            results, evaluate.ACCURACY_KEYS, ": share of the images within", evaluate.SHORT_HEADERS)),
        "error_and_score": dg.MetadataValue.md(evaluate.markdown_table(
            results, evaluate.SUMMARY_KEYS, ": median error, mean GeoGuessr score, country accuracy",
            evaluate.SHORT_HEADERS)),
        "history": dg.MetadataValue.md(history_table(results["history"])),
        "error_plot": inline_png(evaluation.path / "errors.png", "error distribution"),
    })


def _image_embeddings(context: dg.AssetExecutionContext, geosolver: GeosolverResource) -> dg.MaterializeResult:
    """Every shard row embedded once by the published model; shards already embedded are reused."""
    from geosolver_model import stages as model_stages

    spec, home = geosolver.spec(), geosolver.store()
    model = home.models.latest()
    result = model_stages.embed(spec, home, model, log=context.log.info)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(model.version + ":" + model.info.dataset.version),
        metadata={"model_version": model.version, "embedded": result.embedded, "reused": result.reused,
                  "rows": result.embedded + result.reused, "files": len(result.files)},
    )


def _index(geosolver: GeosolverResource, series: str) -> dg.MaterializeResult:
    from geosolver_model import stages as model_stages

    spec, home = geosolver.spec(), geosolver.store()
    model = home.models.latest()
    embeddings = model_stages.embed(spec, home, model, log=lambda _: None)  # reuses what is on disk
    build = model_stages.image_index if series == "image" else model_stages.gps_index
    artifact = build(spec, home, model, embeddings)
    m = artifact.info
    return published_artifact(artifact, {
        "model_version": m.model_version, "index_key": m.index.key, "vectors": m.index.count,
        "recall_at_10": m.recall_at_10, "p50_ms": m.latency_ms.p50, "p99_ms": m.latency_ms.p99})


def _embedding_index(context: dg.AssetExecutionContext, geosolver: GeosolverResource) -> dg.MaterializeResult:
    """Image -> image nearest neighbours over the train and val rows: a versioned FAISS artifact."""
    return _index(geosolver, "image")


def _gps_gallery_index(context: dg.AssetExecutionContext, geosolver: GeosolverResource) -> dg.MaterializeResult:
    """Location-encoder embeddings of the GPS gallery: a versioned FAISS artifact."""
    return _index(geosolver, "gps")


Body = Callable[[dg.AssetExecutionContext, GeosolverResource], dg.MaterializeResult]
# name, body, upstream, group, kinds: the graph, in stage order
GRAPH: list[tuple[str, Body, str | None, str, set[str]]] = [
    ("raw_images", _raw_images, None, DATASET, {"parquet"}),
    ("deduplicated_images", _deduplicated_images, "raw_images", DATASET, {"duckdb", "parquet"}),
    ("geocells", _geocells, "deduplicated_images", DATASET, {"parquet"}),
    ("balanced_dataset", _balanced_dataset, "geocells", DATASET, {"parquet"}),
    ("dataset_shards", _dataset_shards, "balanced_dataset", DATASET, {"parquet"}),
    ("finetuned_model", _finetuned_model, "dataset_shards", MODEL, {"pytorch", "safetensors"}),
    ("geolocation_eval", _geolocation_eval, "finetuned_model", MODEL, {"pytorch"}),
    ("image_embeddings", _image_embeddings, "finetuned_model", INDEX, {"parquet"}),
    ("embedding_index", _embedding_index, "image_embeddings", INDEX, {"faiss"}),
    ("gps_gallery_index", _gps_gallery_index, "image_embeddings", INDEX, {"faiss"}),
]


class DatasetAssets(NamedTuple):
    raw_images: dg.AssetsDefinition
    deduplicated_images: dg.AssetsDefinition
    geocells: dg.AssetsDefinition
    balanced_dataset: dg.AssetsDefinition
    dataset_shards: dg.AssetsDefinition
    finetuned_model: dg.AssetsDefinition
    geolocation_eval: dg.AssetsDefinition
    image_embeddings: dg.AssetsDefinition
    embedding_index: dg.AssetsDefinition
    gps_gallery_index: dg.AssetsDefinition


def dataset_assets(scope: Scope, partitions: dg.PartitionsDefinition,
                   compute: ComputeConfig | None = None) -> DatasetAssets:
    """One dataset's graph: keys and groups from `scope`, its resource under `scope.resource_key`,
    ingest partitioned by its regions; the model and index steps carry `compute`'s tags (GPUs, node
    selector, tolerations) for the cluster executors."""
    model_tags = model_step_tags(compute or ComputeConfig())

    built = {}
    for name, body, upstream, group, kinds in GRAPH:
        built[name] = dg.asset(
            key=scope.key(name), deps=[built[upstream]] if upstream else None, group_name=scope.group(group),
            partitions_def=None if upstream else partitions, automation_condition=automation if upstream else None,
            kinds=kinds, required_resource_keys={scope.resource_key}, description=body.__doc__,
            op_tags=model_tags if group in (MODEL, INDEX) else None,
        )(scope.bind(body))
    return DatasetAssets(**built)

