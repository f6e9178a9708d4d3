"""The one resource every asset uses: where artifacts live and which spec to build."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from geosolver_data.layout import DatasetLayout, geosolver_home, home_setting
from geosolver_data.mirror import Mirror, is_remote
from geosolver_data.spec import DatasetSpec, load_spec


class GeosolverResource(dg.ConfigurableResource):
    """Empty values fall back to $GEOSOLVER_HOME / $GEOSOLVER_SPEC, then to the defaults.

    With a remote home (`s3://…`), each step pulls the home's changes into its local working copy
    before it runs and pushes what it wrote afterwards, also when it failed (so a rerun resumes from
    the ingest ledger)."""

    home: str = ""
    spec_path: str = ""
    _mirror: Mirror | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        setting = home_setting(self.home or None)
        if is_remote(setting):
            self._mirror = Mirror(setting)
            pulled = self._mirror.pull()
            context.log.info(f"pulled {pulled} changed file(s) from {self._mirror.uri}")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._mirror is not None:
            pushed = self._mirror.push()
            context.log.info(f"pushed {pushed} new or changed file(s) to {self._mirror.uri}")

    def spec(self) -> DatasetSpec:
        return load_spec(self.spec_path or None)

    def layout(self, spec: DatasetSpec | None = None) -> DatasetLayout:
        """Pass the spec when you already have it, so the YAML is read once."""
        return DatasetLayout(geosolver_home(self.home or None), (spec or self.spec()).name)
