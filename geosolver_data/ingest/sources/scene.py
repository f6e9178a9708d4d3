"""A street-like scene whose look depends on where it is, so a model can learn location from pixels.

Signals at three scales: climate (sky and light vary with latitude), a smooth world-wide field
of ground and facade colours (random Fourier features of the 3-D position, fixed for all specs),
and a per-country sign colour. Per-view randomness (layout, horizon, noise) keeps every view
perceptually distinct.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from geosolver_data.gazetteer import unit_vectors

WIDTH, HEIGHT = 512, 384
_FIELD = np.random.default_rng(20240601).normal(size=(3, 12)) * np.array([[1.5], [1.5], [1.5]])
_FIELD_FINE = np.random.default_rng(20240602).normal(size=(3, 12)) * 6.0


def _field(lat: float, lon: float, freqs: np.ndarray) -> np.ndarray:
    """A smooth vector field on the sphere: 12 values in [0, 1]."""
    xyz = unit_vectors(np.array([lat]), np.array([lon]))[0]
    return 0.5 + 0.5 * np.sin(xyz @ freqs + np.arange(freqs.shape[1]))


def _country_colour(country: str) -> np.ndarray:
    digest = hashlib.sha256(country.encode()).digest()
    return np.frombuffer(digest[:3], dtype=np.uint8).astype(np.float64)


@dataclass(frozen=True)
class SceneDraws:
    """Every random value one scene takes, drawn in the order the renderer has always drawn them.

    Drawing is the only part of a scene tied to the generator's sequence; painting from the draws is
    not, so a caller can draw scenes one after another and paint them in parallel (same bytes).
    """

    horizon: int
    ground_noise: np.ndarray  # (HEIGHT - horizon, 1, 3)
    centre: int
    buildings: tuple[tuple[int, int, int, int, float], ...]  # (width, height, x, palette, shade)
    sign: tuple[int, int]  # (x, y)
    noise: np.ndarray  # (HEIGHT, WIDTH, 3): sensor grain


def draw_scene(population: int, rng: np.random.Generator) -> SceneDraws:
    horizon = int(HEIGHT * rng.uniform(0.42, 0.58))
    ground_noise = rng.normal(0, 6, size=(HEIGHT - horizon, 1, 3))
    centre = WIDTH // 2 + int(rng.integers(-60, 60))
    storeys = 1 + int(np.log10(max(population, 10)))  # bigger places, taller buildings
    buildings = []
    for _ in range(int(rng.integers(4, 9))):
        w = int(rng.integers(30, 110))
        h = int(min(horizon - 5, rng.uniform(0.4, 1.0) * 12 * storeys + 20))
        x = int(rng.integers(0, WIDTH - w))
        buildings.append((w, h, x, int(rng.integers(0, 3)), float(rng.uniform(0.75, 1.0))))
    sign = int(rng.integers(10, WIDTH - 50)), horizon - int(rng.integers(40, 90))
    return SceneDraws(horizon, ground_noise, centre, tuple(buildings), sign, rng.normal(0, 4, size=(HEIGHT, WIDTH, 3)))


def paint_scene(lat: float, lon: float, country: str, draws: SceneDraws) -> Image.Image:
    """The RGB street scene, 512x384, for a camera at (lat, lon), from its draws."""
    coarse, fine = _field(lat, lon, _FIELD), _field(lat, lon, _FIELD_FINE)
    warmth = np.cos(np.radians(lat))  # 1 at the equator, 0 at the poles
    img = np.zeros((HEIGHT, WIDTH, 3), dtype=np.float64)
    horizon = draws.horizon
    rows = np.linspace(0, 1, horizon)[:, None]
    sky_top = np.array([40 + 60 * (1 - warmth), 90 + 60 * warmth, 200 + 40 * warmth])
    sky_low = np.array([200, 210, 220]) * (0.7 + 0.3 * coarse[:3])
    img[:horizon] = sky_top * (1 - rows[..., None]) + sky_low * rows[..., None]
    ground = 255 * coarse[3:6] * (0.6 + 0.4 * warmth)
    img[horizon:] = ground + draws.ground_noise
    road_w = int(WIDTH * (0.25 + 0.2 * coarse[6]))
    centre = draws.centre
    img[horizon:, max(0, centre - road_w // 2):centre + road_w // 2] = 60 + 60 * coarse[7]
    for w, h, x, palette, shade in draws.buildings:
        img[horizon - h:horizon, x:x + w] = 255 * fine[np.array([0, 1, 2]) + palette * 3] * shade
        img[horizon - h:horizon:12, x:x + w] *= 0.7  # window rows
    sign_x, sign_y = draws.sign
    img[sign_y:sign_y + 28, sign_x:sign_x + 40] = _country_colour(country)
    img += draws.noise
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def render_scene(lat: float, lon: float, country: str, population: int, rng: np.random.Generator) -> Image.Image:
    """An RGB street scene, 512x384, for a camera at (lat, lon)."""
    return paint_scene(lat, lon, country, draw_scene(population, rng))
