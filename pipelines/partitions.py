"""Ingest is partitioned by the spec's regions, so a backfill fans out one run per region."""

import dagster as dg

from geosolver_data.spec import load_spec

region_partitions = dg.StaticPartitionsDefinition(load_spec().region_names)
