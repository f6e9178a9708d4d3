from pathlib import Path

import pytest

from geosolver_data import stages
from geosolver_data.model_spec import ModelConfig, Spec, load_spec
from geosolver_data.store.home import DatasetLayout

LEARN_SPEC = Path(__file__).parents[1] / "specs" / "learn.yaml"
TINY = ModelConfig(base="tiny", embed_dim=64, loc_features=64, loc_hidden=128)  # the demo's model sizes


def with_model(spec: Spec, **changes: object) -> Spec:
    """The spec with some model settings changed (validated like a spec file)."""
    return Spec.model_validate({**spec.model_dump(), "model": {**spec.model.model_dump(), **changes}})


@pytest.fixture(scope="session")
def learn_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Spec, Path, Path]:
    """(spec, GEOSOLVER_HOME, dataset version folder) of a ~450-image synthetic dataset."""
    spec = load_spec(LEARN_SPEC)
    home = tmp_path_factory.mktemp("learn")
    published = stages.build_dataset(spec, DatasetLayout(home, spec.name), log=lambda _: None)
    return spec, home, published.path
