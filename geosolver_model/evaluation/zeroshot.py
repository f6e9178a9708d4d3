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
from geosolver_model.net import device as devices
from geosolver_model.net.images import Processing

CITIES_PER_COUNTRY = 30


# The names people (and photo captions, which CLIP learnt from) use, where the gazetteer's are formal ISO
# names such as "Korea, Republic of": StreetCLIP's paper prompts with common country names.
COMMON_NAMES = {
    "BN": "Brunei", "BO": "Bolivia", "CD": "the Democratic Republic of the Congo", "CG": "the Republic of the Congo",
    "CI": "Ivory Coast", "CV": "Cape Verde", "CZ": "Czechia", "FK": "the Falkland Islands",
    "FM": "Micronesia", "GB": "the United Kingdom", "IR": "Iran", "KP": "North Korea", "KR": "South Korea",
    "LA": "Laos", "LY": "Libya", "MD": "Moldova", "MK": "North Macedonia", "PS": "Palestine", "RU": "Russia",
    "SY": "Syria", "SZ": "Eswatini", "TZ": "Tanzania", "US": "the United States", "VA": "Vatican City",
    "VG": "the British Virgin Islands", "VI": "the US Virgin Islands", "AE": "the United Arab Emirates",
    "NL": "the Netherlands", "PH": "the Philippines", "DO": "the Dominican Republic", "BQ": "the Caribbean Netherlands",
}


@functools.cache
def country_names() -> dict[str, str]:
    """ISO code -> the name a prompt uses: the common name where the gazetteer's is a formal one."""
    text = resources.files("reverse_geocode").joinpath("countries.csv").read_text(encoding="utf-8")
    return {code: COMMON_NAMES.get(code, name) for code, name in csv.reader(text.splitlines())}


class ZeroShot:
    """Country prompts "A Street View photo in {country}.", then "... from {city}." for its largest cities."""

    def __init__(self, clip: CLIPModel, tokenizer: CLIPTokenizer, processing: Processing,
                 device: str | torch.device = "cpu", precision: devices.Precision = "auto") -> None:
        dev = devices.resolve(device) if isinstance(device, str) else device
        self.clip, self.tokenizer, self.processing = clip.eval().to(dev), tokenizer, processing
        self.precision = precision
        gaz = load_gazetteer()
        names = country_names()
        self.codes = sorted({c for c in np.unique(gaz.country) if c in names})
        self.country_emb = self._text([f"A Street View photo in {names[c]}." for c in self.codes])
        self._city_cache: dict[str, tuple[np.ndarray, torch.Tensor]] = {}

    @property
    def ingest(self) -> ImageSpec:
        """Raw photos are resized as a dataset built for this CLIP's input would store them."""
        return ImageSpec(min_side=self.processing.shortest_edge)

    def _text(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        with devices.inference(self.clip, self.precision) as dev:
            out = self.clip.get_text_features(input_ids=tokens["input_ids"].to(dev),
                                              attention_mask=tokens["attention_mask"].to(dev))
        return F.normalize(getattr(out, "pooler_output", out).float(), dim=-1)

    def _cities(self, code: str) -> tuple[np.ndarray, torch.Tensor]:
        if code not in self._city_cache:
            gaz = load_gazetteer()
            idx = np.flatnonzero(gaz.country == code)
            idx = idx[np.argsort(-gaz.population[idx], kind="stable")][:CITIES_PER_COUNTRY]
            self._city_cache[code] = (idx, self._text([f"A Street View photo from {gaz.name[i]}." for i in idx]))
        return self._city_cache[code]

    def predict(self, pixels: torch.Tensor) -> np.ndarray:
        """(B, 3, S, S) pixels at the CLIP's own size -> (B, 2) degrees."""
        with devices.inference(self.clip, self.precision) as dev:
            out = self.clip.get_image_features(pixel_values=pixels.to(dev))
        img = F.normalize(getattr(out, "pooler_output", out).float(), dim=-1)
        gaz = load_gazetteer()
        guesses = []
        for row, country in zip(img, (img @ self.country_emb.T).argmax(dim=1).tolist(), strict=True):
            code = self.codes[country]
            idx, city_emb = self._cities(code)
            best = idx[int((city_emb @ row).argmax())]
            guesses.append((gaz.lat[best], gaz.lon[best]))
        return np.array(guesses, dtype=np.float64)
