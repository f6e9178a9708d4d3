"""The one image path: the processor's settings (pinned to StreetCLIP's), our fast path against the
stock processor, and a photo through `geosolver predict`'s path against its shard row through
training's: the same pixels reach the model."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, CLIPImageProcessorPil, CLIPVisionModelWithProjection

from geosolver_data.ingest.images import process_image
from geosolver_data.ingest.sources.scene import render_scene
from geosolver_data.spec import ImageSpec
from geosolver_model.net.images import Processing, decode, to_pixels
from geosolver_model.net.model import GeoRetriever
from geosolver_model.train.loop import build_model
from tests.data.images_util import encode, noise_image
from tests.model.conftest import TINY

# geolocal/StreetCLIP's preprocessor_config.json as published on the Hub (the settings CLIP ViT-L/14
# at 336 px was pretrained with): the model's own resize, crop and normalisation, which ours must equal.
STREETCLIP_PROCESSOR = {
    "crop_size": {"height": 336, "width": 336}, "do_center_crop": True, "do_normalize": True,
    "do_rescale": True, "do_resize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "rescale_factor": 1 / 255,
    "size": {"shortest_edge": 336},
}


def test_our_processing_is_streetclips(tmp_path) -> None:
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {**STREETCLIP_PROCESSOR, "image_processor_type": "CLIPImageProcessor"}))
    published = Processing.load(tmp_path)
    assert published == Processing(336, 336, 3, 1 / 255, tuple(STREETCLIP_PROCESSOR["image_mean"]),
                                   tuple(STREETCLIP_PROCESSOR["image_std"]))
    assert Processing.for_size(336) == published  # what the tiny base (StreetCLIP's geometry) uses
    model = build_model(TINY)
    assert model.processing == published and model.image_size == 336
    assert model.vision.config.patch_size == 14


@pytest.mark.parametrize("size", [(448, 336), (336, 448), (672, 336), (500, 375), (336, 336), (200, 150)])
def test_the_fast_path_equals_the_stock_processor(size: tuple[int, int]) -> None:
    image = noise_image(7, size)
    stock = CLIPImageProcessorPil(**STREETCLIP_PROCESSOR)(images=image, return_tensors="pt")["pixel_values"][0]
    ours = to_pixels(image, Processing.for_size(336))
    assert ours.shape == stock.shape == (3, 336, 336)
    assert torch.allclose(ours, stock, atol=1e-5)


def test_a_photo_reaches_the_model_as_its_shard_row_does() -> None:
    """`geosolver predict` gets the full-resolution photo; training gets the JPEG ingest stored."""
    scene = render_scene(48.85, 2.35, "FR", 2_000_000, np.random.default_rng(0))  # a street-like picture
    photo = encode(scene.resize((2048, 1536), Image.Resampling.BICUBIC), quality=95)
    spec = ImageSpec()  # ingest's defaults: short side 336
    row = process_image(photo, spec)  # what the shard holds: 448x336, re-encoded at quality 90
    model = build_model(TINY, spec)
    predict_path = model.pixels(model.photo(photo))
    training_path = to_pixels(decode(row.jpeg), model.processing)
    diff = (predict_path - training_path).abs()
    # Same size, crop and orientation: the only difference is the shard's JPEG re-encoding at quality 90,
    # about 3 grey levels on average (one grey level is ~0.015 after normalising), more at sharp edges.
    assert diff.mean() < 0.06 and torch.quantile(diff.flatten(), 0.99) < 0.4, (diff.mean(), diff.max())
    elsewhere = render_scene(-33.9, 151.2, "AU", 4_000_000, np.random.default_rng(1)).resize((2048, 1536))
    other = to_pixels(decode(process_image(encode(elsewhere), spec).jpeg), model.processing)
    assert (predict_path - other).abs().mean() > 10 * diff.mean()  # a different photo is far away


def test_exif_rotation_is_applied_on_the_predict_path() -> None:
    upright = Image.new("RGB", (800, 600), (255, 0, 0))
    upright.paste((0, 0, 255), (0, 0, 400, 600))  # left half blue
    stored = encode(upright.transpose(Image.Transpose.ROTATE_90), lat=1.0, lon=2.0, orientation=6, quality=95)
    model = build_model(TINY)
    image = model.photo(stored)
    assert image.size == (448, 336)
    assert image.getpixel((20, 168))[2] > 200 and image.getpixel((430, 168))[0] > 200


def test_a_saved_model_loads_with_stock_transformers_calls(tmp_path) -> None:
    model = build_model(TINY, ImageSpec(min_side=336, max_side=600)).eval()
    model.save(tmp_path)
    vision = CLIPVisionModelWithProjection.from_pretrained(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    image = noise_image(3, (448, 336))
    pixels = processor(images=image, return_tensors="pt")["pixel_values"]
    assert torch.allclose(pixels[0], model.pixels(image), atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(vision(pixel_values=pixels).image_embeds, model.vision(pixel_values=pixels).image_embeds)
    again = GeoRetriever.from_pretrained(tmp_path)
    assert again.ingest == ImageSpec(min_side=336, max_side=600) and again.processing == model.processing
    with torch.no_grad():
        assert torch.allclose(again.encode_images(pixels), model.encode_images(pixels), atol=1e-6)
    assert np.allclose(json.loads((tmp_path / "preprocessor_config.json").read_text())["image_mean"],
                       STREETCLIP_PROCESSOR["image_mean"])
    assert io.BytesIO((tmp_path / "model.safetensors").read_bytes()).getbuffer().nbytes > 0
