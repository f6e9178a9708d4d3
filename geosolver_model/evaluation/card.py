"""A published model's card: the README.md with Hugging Face front matter that the Hub and people read.

It says what the model is (base, objective, embedding size), what it was trained on (dataset and
version, steps) and how it does on the dataset's validation split; the full comparison on the test
split and the public benchmarks is the evaluation artifact's (evals/<version>/).
"""

from __future__ import annotations

import yaml

from geosolver_data.store.manifests import ModelManifest
from geosolver_model.evaluation.metrics import THRESHOLDS_KM

# Licences of the bases we know; any other base's own licence applies to the fine-tuned weights.
BASE_LICENSES = {"geolocal/StreetCLIP": "cc-by-nc-4.0", "tiny": "mit", "tiny-64": "mit"}


def model_index(manifest: ModelManifest, objective: str, val: dict, dataset_id: str) -> list[dict]:
    """The Hub's `model-index`: the validation figures as results the Hub shows as this model's evaluation."""
    dataset = manifest.dataset
    metrics = [{"type": "median_km", "name": "median error (km)", "value": val["median_km"]},
               *({"type": f"acc_{t}km", "name": f"accuracy within {t} km", "value": val[f"acc_{t}km"]}
                 for t in THRESHOLDS_KM),
               {"type": "geoguessr_score", "name": "mean GeoGuessr score (of 5000)", "value": val["geoguessr_score"]}]
    return [{"name": f"geosolver-{manifest.version}-{objective}", "results": [{
        "task": {"type": "image-feature-extraction", "name": "image geolocation by retrieval"},
        "dataset": {"name": f"{dataset.name} {dataset.version}", "type": dataset_id, "split": "validation"},
        "metrics": [m for m in metrics if m["value"] is not None]}]}]


def model_card(manifest: ModelManifest, objective: str, val: dict | None, folder: str,
               datasets: tuple[str, ...] = (), repo: str = "") -> str:
    """README.md of one saved model folder (`folder`: its path in the model version, e.g. `finetuned`).
    `datasets`: the Hub ids of its training data (the spec's `publish.dataset` repo, OSV-5M's repo), for
    the front matter's `datasets:`; `repo`: the Hub repo it is published to (`publish.model`), if any."""
    base, dataset, trained = manifest.base, manifest.dataset, manifest.model_spec
    # The task is image feature extraction, but not through transformers' pipeline: it loads a
    # `clip_vision_model` with AutoModel, CLIPVisionModel, which drops the projection into the shared space
    # that the retrieval needs. So the library is ours, and the card's snippet loads the tower as
    # CLIPVisionModelWithProjection (tested), or the whole geolocator with GeoRetriever.
    front: dict = {
        "library_name": "geosolver",
        "pipeline_tag": "image-feature-extraction",
        "license": BASE_LICENSES.get(base, "other"),
        "tags": ["geolocation", "clip", "retrieval", "transformers", objective],
    }
    if "/" in base:  # a Hub id (a local folder's name means nothing elsewhere)
        front["base_model"] = base
    if datasets:
        front["datasets"] = list(datasets)
    if val and val.get("n"):
        front["model-index"] = model_index(manifest, objective, val, datasets[0] if datasets else dataset.name)
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
             f"# Geosolver retrieval geolocator {manifest.version} ({objective})", "",
             f"A CLIP vision tower (`{base}`) fine-tuned with the `{objective}` objective so that an image's "
             "embedding lies near the embedding of the place it was taken, plus a GeoCLIP-style location "
             "encoder for the same space. A guess is a nearest-neighbour search over embeddings of places.", "",
             f"- base: `{base}`" + (f" at commit `{manifest.base_commit}` (revision `{manifest.base_revision}`)"
                                   if manifest.base_commit else ""),
             f"- dataset: `{dataset.name}` version `{dataset.version}`",
             f"- training: {trained['steps']} steps, batch {trained['batch_size']}, "
             f"last {trained['unfreeze_last_blocks']} vision blocks unfrozen",
             f"- embedding size: {trained['embed_dim']}", "",
             "Geolocate a photo (`pip install geosolver`; the home is where this model was published):", "",
             "```python",
             "import os",
             "from transformers import AutoImageProcessor, CLIPVisionModelWithProjection",
             "from geosolver_model import Geolocator, GeoRetriever",
             "",
             'home = os.environ.get("GEOSOLVER_HOME", ".geosolver")',
             f'folder = os.path.join(home, "models", "{manifest.version}", *"{folder}".split("/"))',
             "vision = CLIPVisionModelWithProjection.from_pretrained(folder)  # stock transformers; AutoModel would "
             "drop the projection",
             "processor = AutoImageProcessor.from_pretrained(folder)",
             "geolocator = GeoRetriever.from_pretrained(folder)  # tower, image head and location encoder",
             f'geo = Geolocator.from_home(home, model="{manifest.version}")  # its published weights and indexes',
             'for place in geo.predict("photo.jpg"):  # your photo: the places `geosolver predict` answers',
             '    print(place["lat"], place["lon"], place["place"], place["country"])',
             "```", ""]
    if repo:
        lines[-1:-1] = ["", f'From the Hub (`{repo}`), the whole geolocator: `GeoRetriever.from_pretrained("{repo}")`.']
    if val:
        keys = [f"acc_{t}km" for t in THRESHOLDS_KM] + ["median_km", "geoguessr_score", "country_acc", "n"]
        lines += [f"On the dataset's validation split ({val['n']} images):", "",
                  "| " + " | ".join(keys) + " |", "|---" * len(keys) + "|",
                  "| " + " | ".join(str(val[k]) for k in keys) + " |", ""]
    return "\n".join(lines)
