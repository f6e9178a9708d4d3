"""A published model version as its users load it (embedding, the GPS index, evaluation, `benchmark`,
`play`): every file verified against its manifest first, then the weights on the spec's device."""

from __future__ import annotations

from pathlib import Path

from geosolver_data.model_spec import Spec
from geosolver_data.store.artifact import Artifact
from geosolver_data.store.home import Home
from geosolver_data.store.manifests import ModelManifest
from geosolver_model.names import PUBLISHED
from geosolver_model.net.model import GeoRetriever


def load_geolocator(spec: Spec, folder: Path) -> GeoRetriever:
    """A saved geolocator on the spec's device and precision."""
    return GeoRetriever.from_pretrained(folder, spec.model.device, spec.model.precision)


def dataset_of(home: Home, model: Artifact[ModelManifest]) -> Path:
    """The dataset version a model was trained on, refused (ArtifactDamaged) when a file of it is missing."""
    trained_on = model.info.dataset
    return home.datasets(trained_on.name).require_intact(trained_on.version, deep=False).path


def intact_model(home: Home, model: Artifact, under: str = "") -> Artifact:
    """The model version (or one folder of it) with every file as its manifest says, sha256 included (once
    per process per file); else ArtifactDamaged naming the file and the remedy."""
    return home.models.require_intact(model.version, under)


def published_model(spec: Spec, home: Home, model: Artifact) -> GeoRetriever:
    """The published geolocator of a model version, its files verified, on the spec's device and precision."""
    return load_geolocator(spec, intact_model(home, model, PUBLISHED).path / PUBLISHED)
