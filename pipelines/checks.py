"""Blocking checks on a published dataset version: a failure stops everything downstream of it."""

from collections.abc import Callable
from pathlib import Path

import dagster as dg

from geosolver_data import validate
from pipelines.assets import dataset_shards
from pipelines.resources import GeosolverResource


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
