from pathlib import Path

import pytest

from geosolver_data import stages
from geosolver_data.layout import DatasetLayout
from geosolver_data.spec import DatasetSpec, load_spec

LEARN_SPEC = Path(__file__).parents[1] / "specs" / "learn.yaml"


def with_model(spec: DatasetSpec, **changes: object) -> DatasetSpec:
    """The spec with some model settings changed (validated like a spec file)."""
    return DatasetSpec.model_validate({**spec.model_dump(), "model": {**spec.model.model_dump(), **changes}})


@pytest.fixture(scope="session")
def learn_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetSpec, Path, Path]:
    """(spec, GEOSOLVER_HOME, dataset version folder) of a ~450-image synthetic dataset."""
    spec = load_spec(LEARN_SPEC)
    home = tmp_path_factory.mktemp("learn")
    published = stages.build_dataset(spec, DatasetLayout(home, spec.name), log=lambda _: None)
    return spec, home, published.path
