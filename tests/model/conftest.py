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


def point_at(constants, monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """What HF_ENDPOINT does when set before huggingface_hub is imported (it reads it once, then)."""
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")


@pytest.fixture
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """huggingface_hub pointed at a cache of this test's own (what HF_HOME does for a user)."""
    from huggingface_hub import constants

    assert constants.ENDPOINT.startswith("http://127.0.0.1:"), "tests/conftest.py keeps the Hub on loopback"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)
    return constants
