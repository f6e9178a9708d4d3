"""One preprocessing for training, evaluation, embedding and prediction (plus train-time augmentation).

Resize the short side to the model's input size, centre crop, CLIP mean/std. Augmentations are
mild and never flip horizontally: the side of the road people drive on is a location cue.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageEnhance

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def _square(image: Image.Image, size: int, crop: tuple[float, float, float] = (1.0, 0.5, 0.5)) -> Image.Image:
    """Crop a square of `crop[0]` x the short side at relative position (crop[1], crop[2]); resize."""
    w, h = image.size
    side = max(1, round(min(w, h) * crop[0]))
    left = round((w - side) * crop[1])
    top = round((h - side) * crop[2])
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)


def to_tensor(image: Image.Image) -> torch.Tensor:
    arr = (np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def preprocess(image: Image.Image, size: int) -> torch.Tensor:
    """Evaluation/inference: (3, size, size) normalised."""
    return to_tensor(_square(image, size))


def augment(image: Image.Image, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Training: a random square crop of 70-100% of the short side, small colour jitter."""
    image = _square(image, size, (rng.uniform(0.7, 1.0), rng.uniform(0, 1), rng.uniform(0, 1)))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.85, 1.15))
    return to_tensor(image)


def decode(jpeg: bytes) -> Image.Image:
    with Image.open(io.BytesIO(jpeg)) as im:
        return im.convert("RGB")
