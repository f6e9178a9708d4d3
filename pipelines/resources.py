"""The one resource every asset uses: where artifacts live and which spec to build."""

from __future__ import annotations

import dagster as dg

from geosolver_data.layout import DatasetLayout, geosolver_home
from geosolver_data.spec import DatasetSpec, load_spec


class GeosolverResource(dg.ConfigurableResource):
    """Empty values fall back to $GEOSOLVER_HOME / $GEOSOLVER_SPEC, then to the defaults."""

    home: str = ""
    spec_path: str = ""

    def spec(self) -> DatasetSpec:
        return load_spec(self.spec_path or None)

    def layout(self, spec: DatasetSpec | None = None) -> DatasetLayout:
        """Pass the spec when you already have it, so the YAML is read once."""
        return DatasetLayout(geosolver_home(self.home or None), (spec or self.spec()).name)
