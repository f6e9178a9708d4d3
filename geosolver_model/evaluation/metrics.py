"""Geolocation metrics: distance thresholds, median error, GeoGuessr score, country accuracy."""

from __future__ import annotations

import numpy as np

from geosolver_data.gazetteer import load_gazetteer
from geosolver_data.geo import haversine_km

THRESHOLDS_KM = (1, 25, 200, 750, 2500)


def geoguessr_score(km: np.ndarray) -> np.ndarray:
    """The game's points per round: 5000·exp(-d/1492.7)."""
    return 5000 * np.exp(-km / 1492.7)


def distance_metrics(km: np.ndarray) -> dict[str, float]:
    """acc_<t>km, median_km (numpy's: the mean of the middle pair for an even count) and the mean GeoGuessr
    score of errors in km, rounded as every output shows them: the one definition eval.json, training's
    validation, the UI and `benchmark` use (the play page computes the median the same way)."""
    return {**{f"acc_{t}km": round(float(np.mean(km <= t)), 4) for t in THRESHOLDS_KM},
            "median_km": round(float(np.median(km)), 2),
            "geoguessr_score": round(float(np.mean(geoguessr_score(km))), 1)}


def geo_metrics(pred: np.ndarray, true: np.ndarray, true_country: np.ndarray | None = None) -> dict[str, float | None]:
    """pred, true (N, 2) degrees -> the eval.json keys (None with n = 0). Country of a guess: nearest gazetteer
    place."""
    if not len(true):  # nothing to score: every figure is None (never NaN, which is no JSON)
        return {"n": 0, **{f"acc_{t}km": None for t in THRESHOLDS_KM}, "median_km": None, "geoguessr_score": None,
                "country_acc": None}
    km = haversine_km(pred[:, 0], pred[:, 1], true[:, 0], true[:, 1])
    if true_country is None:
        true_country = load_gazetteer().countries(true[:, 0], true[:, 1])
    pred_country = load_gazetteer().countries(pred[:, 0], pred[:, 1])
    out: dict[str, float] = {"n": len(km), **distance_metrics(km)}
    out["country_acc"] = round(float(np.mean(pred_country == np.asarray(true_country))), 4)
    return out
