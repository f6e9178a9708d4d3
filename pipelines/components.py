"""A Geosolver dataset as a Dagster component, so one code location holds several datasets.

    # pipelines/defs/osv_europe/defs.yaml   (`dg scaffold defs pipelines.components.GeosolverDataset osv_europe`)
    type: pipelines.components.GeosolverDataset
    attributes:
      spec: osv_europe.yaml        # beside this defs.yaml, or an absolute path
      # key_prefix: osv_europe     # default: the spec's name
      # home: s3://bucket/geosolver/osv_europe   # default: $GEOSOLVER_HOME/<key_prefix>

Each instance brings its own asset keys and groups (under the prefix), region partitions, checks,
`<prefix>_ingest` / `<prefix>_build` jobs, `<prefix>_dataset_refresh` schedule on its spec's
`refresh_cron`, and model, evaluation and indexes. The dataset named by GEOSOLVER_SPEC (the demo by
default) is the same graph without a prefix (`default` in pipelines/dataset.py).
"""

from pathlib import Path

import dagster as dg
from pydantic import Field

from pipelines.dataset import build_dataset
from pipelines.resources import GeosolverResource
from pipelines.scope import Scope


class GeosolverDataset(dg.Component, dg.Model, dg.Resolvable):
    """One dataset spec built into its own prefixed graph: ingest, dataset, model, evaluation, indexes."""

    spec: str = Field(description="Path to the dataset spec (YAML), relative to this defs.yaml's folder.")
    key_prefix: str | None = Field(
        default=None, description="Prefix of every asset key, group, job and schedule; default: the spec's name.")
    home: str = Field(
        default="", description="GEOSOLVER_HOME of this dataset (a folder or s3://…); default: "
                                "$GEOSOLVER_HOME/<key_prefix>, so its models and indexes stay apart.")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        spec_path = Path(self.spec) if Path(self.spec).is_absolute() else context.path / self.spec
        if not spec_path.is_file():
            raise FileNotFoundError(f"{context.path}: GeosolverDataset spec {spec_path} does not exist")
        named = GeosolverResource(spec_path=str(spec_path))
        prefix = named.spec().name if self.key_prefix is None else self.key_prefix
        if not prefix:
            raise ValueError(f"{context.path}: key_prefix must not be empty (the unprefixed dataset is "
                             "GEOSOLVER_SPEC's)")
        resource = GeosolverResource(spec_path=str(spec_path), home=self.home, subdir="" if self.home else prefix)
        return build_dataset(Scope(prefix), resource).definitions()
