"""Run every comparator over every test set; write eval.json, a markdown table and an error plot."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from geosolver_data.gazetteer import load_gazetteer
from geosolver_data.geo import haversine_km
from geosolver_data.ingest.progress import Progress
from geosolver_data.spec import ImageSpec
from geosolver_model.evaluation.metrics import THRESHOLDS_KM, geo_metrics, geoguessr_score
from geosolver_model.evaluation.test_sets import TestSet
from geosolver_model.evaluation.zeroshot import ZeroShot
from geosolver_model.net.images import to_pixels
from geosolver_model.net.model import GeoRetriever
from geosolver_model.retrieval.gallery import gallery_embeddings, predict
from geosolver_model.retrieval.locate import Locator

BATCH = 64


@dataclass(frozen=True)
class Predictor:
    """Images at their stored size -> (B, 2) degrees; `ingest` says how a raw photo gets that size."""

    ingest: ImageSpec
    run: Callable[[list[Image.Image]], np.ndarray]


def retrieval_predictor(model: GeoRetriever, gallery: np.ndarray, top_k: int = 5,
                        gallery_emb: torch.Tensor | None = None) -> Predictor:
    """The plain retrieval guess (gallery + ring refinement), computed on the model's device; `gallery_emb`,
    the gallery's embeddings when the caller has them already."""
    model = model.eval()
    gal = torch.as_tensor(gallery, dtype=torch.float32, device=model.device)
    gal_emb = gallery_emb if gallery_emb is not None else gallery_embeddings(model, gal)

    def run(images: list[Image.Image]) -> np.ndarray:
        pixels = torch.stack([model.pixels(im) for im in images])
        return predict(model, pixels, gal, gal_emb, top_k).latlon[:, 0].double().cpu().numpy()

    return Predictor(model.ingest, run)


def locator_predictor(locator: Locator, top_k: int, neighbours: int) -> Predictor:
    """What `geosolver predict` answers first: the locator's best candidate."""
    def run(images: list[Image.Image]) -> np.ndarray:
        return np.array([r.latlon[0] for r in locator.rank(images, top_k, neighbours)], dtype=np.float64)

    return Predictor(locator.model.ingest, run)


def zeroshot_predictor(zs: ZeroShot) -> Predictor:
    return Predictor(zs.ingest, lambda images: zs.predict(torch.stack([to_pixels(im, zs.processing) for im in images])))


def _batches(it: Iterator[Image.Image]) -> Iterator[list[Image.Image]]:
    while batch := list(itertools.islice(it, BATCH)):
        yield batch


def run_predictor(predictor: Predictor, test: TestSet, progress: Progress | None = None) -> np.ndarray:
    """The predictor's guesses (N, 2) for the set's images, in batches; `progress` counts them."""
    if not test.size:
        return np.zeros((0, 2))
    guesses = []
    for batch in _batches(test.images(predictor.ingest)):
        guesses.append(predictor.run(batch))
        if progress is not None:
            progress.advance(len(batch))
    return np.concatenate(guesses)


def evaluate(comparators: dict[str, Predictor], tests: list[TestSet],
             log: Callable[[str], None] = print) -> tuple[dict, dict[str, np.ndarray]]:
    """{test: {comparator: metrics}}, and each comparator's guesses (N, 2) on the first test set. A public
    set is screened first (its photos that are absent or do not decode are left out, counted by reason in
    each comparator's `not_scored`, beside `listed` and the scored `n`)."""
    results: dict[str, dict] = {}
    guesses: dict[str, np.ndarray] = {}
    ingest = next(iter(comparators.values())).ingest if comparators else None
    for position, test in enumerate(tests):
        if test.screen is not None and ingest is not None:
            test = test.screen(ingest)
        results[test.name] = {}
        if not test.size:
            log(f"eval {test.name}: skipped, the set has no images")
        for name, predictor in comparators.items():
            progress = Progress(f"eval {test.name} {name}", log, every_s=15.0, total=test.size)
            pred = run_predictor(predictor, test, progress)
            progress.close(report=False)
            results[test.name][name] = geo_metrics(pred, test.latlon, test.country)
            if test.listed is not None:
                results[test.name][name] |= {"listed": test.listed,
                                             "not_scored": {r: len(v) for r, v in sorted(test.not_scored.items())}}
            if not test.size:
                results[test.name][name]["skipped"] = "the set has no images"
            else:
                log(f"eval {test.name} {name}: {results[test.name][name]}")
            if position == 0:
                guesses[name] = pred
    return results, guesses


def errors_km(guesses: dict[str, np.ndarray], test: TestSet) -> dict[str, np.ndarray]:
    return {name: haversine_km(p[:, 0], p[:, 1], test.latlon[:, 0], test.latlon[:, 1]) for name, p in guesses.items()}


PREDICTIONS_SCHEMA = pa.schema([
    ("image_id", pa.string()), ("comparator", pa.string()), ("lat", pa.float64()), ("lon", pa.float64()),
    ("country", pa.string()), ("guess_lat", pa.float64()), ("guess_lon", pa.float64()),
    ("guess_country", pa.string()), ("error_km", pa.float64()), ("points", pa.float64()),
])


def predictions_table(guesses: dict[str, np.ndarray], test: TestSet) -> pa.Table:
    """One row per (test image, comparator), long format: what `geosolver play`'s errors view shows
    and what DuckDB filters by country or comparator."""
    gaz = load_gazetteer()
    n = test.size
    ids = test.ids if test.ids is not None else np.array([str(i) for i in range(n)])
    country = test.country if test.country is not None else gaz.countries(test.latlon[:, 0], test.latlon[:, 1])
    parts = []
    for name, pred in guesses.items():
        km = haversine_km(pred[:, 0], pred[:, 1], test.latlon[:, 0], test.latlon[:, 1])
        parts.append(pa.table({
            "image_id": pa.array(ids.tolist(), pa.string()), "comparator": pa.array([name] * n, pa.string()),
            "lat": test.latlon[:, 0], "lon": test.latlon[:, 1], "country": pa.array(list(country), pa.string()),
            "guess_lat": pred[:, 0], "guess_lon": pred[:, 1],
            "guess_country": pa.array(gaz.countries(pred[:, 0], pred[:, 1]).tolist(), pa.string()),
            "error_km": np.round(km, 3), "points": np.round(geoguessr_score(km), 1)}, schema=PREDICTIONS_SCHEMA))
    return pa.concat_tables(parts) if parts else PREDICTIONS_SCHEMA.empty_table()


ACCURACY_KEYS = tuple(f"acc_{t}km" for t in THRESHOLDS_KM)
SUMMARY_KEYS = ("median_km", "geoguessr_score", "country_acc", "n")


# Column names short enough that a table of comparators fits the Dagster UI's metadata panel at 1500 px.
SHORT_HEADERS = {**{f"acc_{t}km": f"≤{t} km" for t in THRESHOLDS_KM}, "median_km": "median km",
                 "geoguessr_score": "score", "country_acc": "country"}


def markdown_table(results: dict, keys: tuple[str, ...] = ACCURACY_KEYS + SUMMARY_KEYS, note: str = "",
                   headers: dict[str, str] | None = None) -> str:
    """One table per test set ({test: {comparator: metrics}}; other keys are skipped); `headers` renames
    columns, `note` follows each set's name."""
    lines = []
    for test, by_comp in results.items():
        if not (isinstance(by_comp, dict) and all(isinstance(m, dict) and "median_km" in m for m in by_comp.values())):
            continue  # not a test set's results (model_version, history, location_init, ...)
        names = [(headers or {}).get(k, k) for k in keys]
        lines += [f"**{test}**{note}", "", "| comparator | " + " | ".join(names) + " |",
                  "|---" * (len(keys) + 1) + "|"]
        lines += [f"| {c} | " + " | ".join(_shown(m[k], k, headers is not None) for k in keys) + " |"
                  for c, m in by_comp.items()]
        lines.append("")
    return "\n".join(lines)


def _shown(value: object, key: str, short: bool) -> str:
    """A figure as eval.json holds it; in the short form, fractions to 3 places (as `benchmark` prints them)."""
    if short and isinstance(value, float) and (key.startswith("acc_") or key == "country_acc"):
        return f"{value:.3f}"
    return str(value)


def error_plot(errors: dict[str, np.ndarray], out: Path, title: str) -> Path:
    """Cumulative share of test images within d km, per comparator (log scale)."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for name, km in errors.items():
        if not len(km):
            continue
        xs = np.sort(np.maximum(km, 0.1))
        ax.plot(xs, np.arange(1, len(xs) + 1) / max(1, len(xs)), label=f"{name} (median {np.median(km):.0f} km)")
    for t in THRESHOLDS_KM:
        ax.axvline(t, color="#dddddd", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("error (km)")
    ax.set_ylabel("share of images within")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
