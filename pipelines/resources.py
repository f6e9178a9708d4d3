"""The one resource every asset uses: where artifacts live and which spec to build."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from geosolver_data.model_spec import Spec, load_spec
from geosolver_data.parts import IngestUnit
from geosolver_data.store.home import DatasetLayout, Home, geosolver_home, home_setting
from geosolver_data.store.mirror import Mirror, is_remote


class GeosolverResource(dg.ConfigurableResource):
    """Where artifacts live and which spec to build. Empty values fall back to $GEOSOLVER_HOME /
    $GEOSOLVER_SPEC, then to the defaults.

    With a remote home (`s3://…`), each step pulls the home's changes into its local working copy
    before it reads and pushes what it wrote afterwards, also when it failed (so a rerun resumes from
    the ingest ledger). An ingest step (and its accounting check) pulls only its region's files
    (`pull_region`); the other steps pull the whole home but for what only ingest reads (ledgers,
    listings, demo photos) the first time they ask for a path."""

    home: str = ""
    spec_path: str = ""
    # A folder under the home: each dataset component instance keeps its artifacts (its models'
    # LATEST included) apart from the others'.
    subdir: str = ""
    _mirror: Mirror | None = PrivateAttr(default=None)
    _pulled: bool = PrivateAttr(default=False)
    _log: object = PrivateAttr(default=None)
    _spec: Spec | None = PrivateAttr(default=None)

    def setting(self) -> str:
        """The home as configured (a folder or a URI), with `subdir` under it."""
        base = home_setting(self.home or None)
        return f"{base.rstrip('/')}/{self.subdir}" if self.subdir else base

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        setting = self.setting()
        if is_remote(setting):
            self._mirror = Mirror(setting)
            self._log = context.log

    def _pull(self, prefixes: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> None:
        if self._mirror is None or self._pulled:
            return
        self._pulled = True
        pulled = self._mirror.pull(prefixes, skip)
        what = f" under {', '.join(prefixes)}" if prefixes else f" except {', '.join(skip)}" if skip else ""
        self._log.info(f"pulled {pulled} changed file(s), {self._mirror.bytes_pulled:,} bytes, "
                       f"from {self._mirror.uri}{what}")

    def pull_region(self, spec: Spec, unit: IngestUnit) -> None:
        """What an ingest of one region (or part) reads, and nothing of the other regions or parts."""
        layout = DatasetLayout(Path(geosolver_home(self.setting())), spec.name)
        self._pull(tuple(layout.ingest_reads(unit, spec.sources)))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._mirror is not None:
            pushed = self._mirror.push()
            context.log.info(f"pushed {pushed} new or changed file(s), {self._mirror.bytes_pushed:,} bytes, "
                             f"to {self._mirror.uri}")

    def spec(self) -> Spec:
        """The spec, read and validated once per process (the code location, each step)."""
        if self._spec is None:
            self._spec = load_spec(self.spec_path or None)
        return self._spec

    def store(self) -> Home:
        """Every artifact under the home (its local working copy for a remote home, brought up to
        date on first use, except what only ingest reads, unless the step pulled what it reads already)."""
        home = Home(geosolver_home(self.setting()))
        self._pull(skip=tuple(home.dataset(self.spec().name).ingest_only()))
        return home

    def layout(self, spec: Spec | None = None) -> DatasetLayout:
        return self.store().dataset((spec or self.spec()).name)


# The code location's own instance: the partitions and the schedule are read from its spec.
geosolver = GeosolverResource()
