"""The ingest partitions: one per region, or region × sub-partition when the spec sets
`sub_partitions` (a MultiPartitionsDefinition, so the UI shows a region-by-part grid and a backfill
spreads one region's parts over runs and pods; keys read `region|part`, e.g. `europe|03`)."""

from __future__ import annotations

import dagster as dg

from geosolver_data.parts import IngestUnit, part_label
from geosolver_data.spec import DatasetSpec

REGION, PART = "region", "subpartition"  # dimension names; Dagster orders keys by name: region|part


def ingest_partitions(spec: DatasetSpec) -> dg.PartitionsDefinition:
    regions = dg.StaticPartitionsDefinition(spec.region_names)
    if spec.sub_partitions == 1:
        return regions
    n = spec.sub_partitions
    return dg.MultiPartitionsDefinition({
        REGION: regions, PART: dg.StaticPartitionsDefinition([part_label(p, n) for p in range(n)])})


def ingest_unit(spec: DatasetSpec, partition_key: str) -> IngestUnit:
    """The region (and part) an ingest partition key names."""
    if spec.sub_partitions == 1:
        return spec.ingest_unit(partition_key)
    keys = getattr(partition_key, "keys_by_dimension", None)
    if keys is None:  # a plain string, as a run's tags carry it
        region, _, part = partition_key.partition("|")
        keys = {REGION: region, PART: part}
    return spec.ingest_unit(keys[REGION], int(keys[PART]))
