"""StreetCLIP's own zero-shot geolocation, as its paper does it: pick a country by text prompt,
then a city within it. Names and coordinates come from the offline gazetteer."""

from __future__ import annotations

import csv
import functools
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPModel, CLIPTokenizer

from geosolver_data.gazetteer import load_gazetteer
from geosolver_data.spec import ImageSpec
from geosolver_model.images import Processing

CITIES_PER_COUNTRY = 30


@functools.cache
def country_names() -> dict[str, str]:
    text = resources.files("reverse_geocode").joinpath("countries.csv").read_text(encoding="utf-8")
    return {code: name for code, name in csv.reader(text.splitlines())}


class ZeroShot:
    """Country prompts "A Street View photo in {country}.", then "... from {city}." for its largest cities."""

    def __init__(self, clip: CLIPModel, tokenizer: CLIPTokenizer, processing: Processing) -> None:
        self.clip, self.tokenizer, self.processing = clip.eval(), tokenizer, processing
        gaz = load_gazetteer()
        names = country_names()
        self.codes = sorted({c for c in np.unique(gaz.country) if c in names})
        self.country_emb = self._text([f"A Street View photo in {names[c]}." for c in self.codes])
        self._city_cache: dict[str, tuple[np.ndarray, torch.Tensor]] = {}

    @property
    def ingest(self) -> ImageSpec:
        """Raw photos are resized as a dataset built for this CLIP's input would store them."""
        return ImageSpec(min_side=self.processing.shortest_edge)

    @torch.no_grad()
    def _text(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        out = self.clip.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return F.normalize(getattr(out, "pooler_output", out), dim=-1)

    def _cities(self, code: str) -> tuple[np.ndarray, torch.Tensor]:
        if code not in self._city_cache:
            gaz = load_gazetteer()
            idx = np.flatnonzero(gaz.country == code)
            idx = idx[np.argsort(-gaz.population[idx], kind="stable")][:CITIES_PER_COUNTRY]
            self._city_cache[code] = (idx, self._text([f"A Street View photo from {gaz.name[i]}." for i in idx]))
        return self._city_cache[code]

    @torch.no_grad()
    def predict(self, pixels: torch.Tensor) -> np.ndarray:
        """(B, 3, S, S) pixels at the CLIP's own size -> (B, 2) degrees."""
        out = self.clip.get_image_features(pixel_values=pixels)
        img = F.normalize(getattr(out, "pooler_output", out), dim=-1)
        gaz = load_gazetteer()
        guesses = []
        for row in img:
            code = self.codes[int((self.country_emb @ row).argmax())]
            idx, city_emb = self._cities(code)
            best = idx[int((city_emb @ row).argmax())]
            guesses.append((gaz.lat[best], gaz.lon[best]))
        return np.array(guesses, dtype=np.float64)
