"""GeoGuessr rounds: a person and the model guess where a test-split photo was taken; each guess scores
5000·e^(−d/1492.7) points (the game's world-map formula). Five rounds a game.

The truth stays on the server until the person has guessed, so the page cannot give it away.
"""

from __future__ import annotations

import random
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from geosolver_data.geo import haversine_km
from geosolver_model.evaluation.metrics import geoguessr_score

ROUNDS = 5
KEPT_GAMES = 1000  # games in memory; the oldest is forgotten first


def points(km: float) -> int:
    """GeoGuessr points for an error in km, rounded as the game shows them."""
    return round(float(geoguessr_score(np.float64(km))))


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(haversine_km(np.float64(a[0]), np.float64(a[1]), np.float64(b[0]), np.float64(b[1])))


@dataclass
class Game:
    id: str
    images: list[str]  # test-split image ids, one per round
    results: list[dict] = field(default_factory=list)  # one per round guessed, in order
    pending: bool = False  # a guess of the current round is being scored

    @property
    def round(self) -> int:
        """The round to guess next (0-based); == len(images) when the game is over."""
        return len(self.results)

    def totals(self) -> dict[str, int]:
        return {"person": sum(r["person"]["points"] for r in self.results),
                "model": sum(r["model"]["points"] for r in self.results)}

    def guess(self, truth: dict, person: tuple[float, float], model: dict) -> dict:
        """Score the current round; `truth` is the image's row, `model` the model's top candidate."""
        where = (truth["lat"], truth["lon"])
        scored = {}
        for who, at in (("person", person), ("model", (model["lat"], model["lon"]))):
            km = distance_km(at, where)
            scored[who] = {"lat": at[0], "lon": at[1], "km": round(km, 1), "points": points(km)}
        scored["model"] |= {"place": model.get("place"), "country": model.get("country")}
        result = {"round": self.round + 1, "image_id": truth["image_id"],
                  "truth": {k: truth.get(k) for k in ("lat", "lon", "country", "license", "creator")}, **scored}
        self.results.append(result)
        return {**result, "totals": self.totals(), "over": self.round == len(self.images)}


class Games:
    """Games in progress, by id (in memory: a game is a few minutes of someone's time)."""

    def __init__(self, test_ids: list[str], seed: int | None = None) -> None:
        if not test_ids:
            raise ValueError("the dataset version has no test split to play")
        self.test_ids = test_ids
        self.rng = random.Random(seed)
        self.games: OrderedDict[str, Game] = OrderedDict()

    def new(self) -> Game:
        images = self.rng.sample(self.test_ids, min(ROUNDS, len(self.test_ids)))
        game = Game(secrets.token_urlsafe(12), images)
        self.games[game.id] = game
        while len(self.games) > KEPT_GAMES:
            self.games.popitem(last=False)
        return game

    def get(self, game_id: str) -> Game:
        return self.games[game_id]
