"""Helpers that make real image files for tests."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from geosolver_data.ingest.exif import make_exif


def noise_image(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def encode(image: Image.Image, fmt: str = "JPEG", lat: float | None = None, lon: float | None = None,
           orientation: int = 1, **kwargs: object) -> bytes:
    out = io.BytesIO()
    if lat is not None and lon is not None:
        kwargs["exif"] = make_exif(lat, lon, datetime(2020, 6, 1, 12, tzinfo=UTC), orientation)
    image.save(out, fmt, **kwargs)
    return out.getvalue()
