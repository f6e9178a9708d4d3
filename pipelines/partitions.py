"""Ingest is partitioned by the spec's regions, so a backfill fans out one run per region."""

import dagster as dg

from pipelines.resources import geosolver

region_partitions = dg.StaticPartitionsDefinition(geosolver.spec().region_names)
