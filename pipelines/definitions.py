"""The code location: `dagster dev`, `dg` and `dagster asset materialize -m pipelines.definitions`
load this. The default dataset (GEOSOLVER_SPEC, else the demo) has the plain names; every
GeosolverDataset component under pipelines/defs/ adds a dataset under its own prefix."""

from pathlib import Path

import dagster as dg

from pipelines import dataset
from pipelines.executors import executor_from_env
from pipelines.sensors import automation

PROJECT = Path(__file__).resolve().parents[1]


def component_datasets(project: Path = PROJECT) -> dg.Definitions:
    """The GeosolverDataset instances under pipelines/defs/ (Dagster's defs folder, found through
    [tool.dg] in pyproject.toml)."""
    instances = sorted((project / "pipelines" / "defs").glob("**/defs.yaml"))
    if not instances:
        return dg.Definitions()
    if not (project / "pyproject.toml").is_file():
        raise FileNotFoundError(f"{len(instances)} dataset component(s) under {project / 'pipelines' / 'defs'} but no "
                                f"pyproject.toml in {project}: install the project editable (pip install -e .)")
    return dg.load_from_defs_folder(path_within_project=project)


defs = dg.Definitions.merge(
    dataset.default.definitions(),
    component_datasets(),
    dg.Definitions(sensors=[automation], executor=executor_from_env()),
)
