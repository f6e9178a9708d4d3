"""The one way the model sees a picture: training (plus its augmentation), evaluation, embedding,
`geosolver predict` and the public test sets all go through here.

1. A raw photo (a file the user gives, a public test set's image) is made upright from its EXIF
   orientation and resized exactly as ingest resizes it (geosolver_data.ingest.images.decode with
   the dataset's ImageSpec), so it arrives as a shard row would. Shard rows are already that.
2. Then the base model's own CLIPImageProcessor settings (shortest edge, centre crop, resampling,
   rescale, mean/std), read from its preprocessor_config.json, never hand-written: StreetCLIP's are
   shortest edge 336, centre crop 336, bicubic, CLIP mean/std. `to_pixels` computes what
   CLIPImageProcessorPil computes (a test holds them equal) without its per-call overhead.

Augmentations are mild and never flip horizontally: the side of the road people drive on is a cue.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps, UnidentifiedImageError
from transformers import CLIPImageProcessorPil

from geosolver_data.ingest.images import DECODE_ERRORS, ImageRejected, open_image
from geosolver_data.ingest.images import decode as ingest_decode
from geosolver_data.spec import ImageSpec

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Processing:
    """A CLIPImageProcessor's settings, as the numbers `to_pixels` needs."""

    shortest_edge: int
    crop: int
    resample: int  # a PIL resampling filter (3 = bicubic)
    rescale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def of(cls, processor: CLIPImageProcessorPil) -> Processing:
        return cls(int(processor.size["shortest_edge"]), int(processor.crop_size["height"]), int(processor.resample),
                   float(processor.rescale_factor), tuple(processor.image_mean), tuple(processor.image_std))

    @classmethod
    def load(cls, folder: Path | str, revision: str | None = None) -> Processing:
        """From a model folder's preprocessor_config.json (or a Hub repo's, at `revision`)."""
        return cls.of(CLIPImageProcessorPil.from_pretrained(folder, revision=revision or "main"))

    @classmethod
    def for_size(cls, size: int) -> Processing:
        """What CLIP's (and StreetCLIP's) processor does at another input size: for a model built
        from a config (the tiny base), which comes with no preprocessor_config.json."""
        return cls.of(clip_processor(size))

    def processor(self) -> CLIPImageProcessorPil:
        return CLIPImageProcessorPil(size={"shortest_edge": self.shortest_edge},
                                     crop_size={"height": self.crop, "width": self.crop}, resample=self.resample,
                                     rescale_factor=self.rescale, image_mean=list(self.mean),
                                     image_std=list(self.std), do_center_crop=True, do_convert_rgb=True)

    def save(self, folder: Path) -> None:
        self.processor().save_pretrained(folder)


def clip_processor(size: int) -> CLIPImageProcessorPil:
    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                 resample=Image.Resampling.BICUBIC, image_mean=list(CLIP_MEAN),
                                 image_std=list(CLIP_STD), do_center_crop=True, do_convert_rgb=True)


def _normalise(image: Image.Image, p: Processing) -> torch.Tensor:
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) * np.float32(p.rescale)
    arr = (arr - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def to_pixels(image: Image.Image, p: Processing) -> torch.Tensor:
    """(3, crop, crop): the short side resized to `shortest_edge`, the centre cropped, normalised."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(p.shortest_edge * long / short)
    size = (p.shortest_edge, new_long) if w <= h else (new_long, p.shortest_edge)
    if size != image.size:
        image = image.resize(size, p.resample)
    left, top = (size[0] - p.crop) // 2, (size[1] - p.crop) // 2
    return _normalise(image.crop((left, top, left + p.crop, top + p.crop)), p)


def augment(image: Image.Image, p: Processing, rng: np.random.Generator) -> torch.Tensor:
    """Training: a random square of 70-100% of the short side, mild colour jitter, then the processor."""
    w, h = image.size
    side = max(1, round(min(w, h) * rng.uniform(0.7, 1.0)))
    left, top = round((w - side) * rng.uniform(0, 1)), round((h - side) * rng.uniform(0, 1))
    image = image.crop((left, top, left + side, top + side))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.85, 1.15))
    return to_pixels(image, p)


def decode(jpeg: bytes) -> Image.Image:
    """A shard row's image (already upright and at the stored size)."""
    with Image.open(io.BytesIO(jpeg)) as im:
        return im.convert("RGB")


def open_photo(source: Path | bytes, ingest: ImageSpec) -> Image.Image:
    """A raw photo as ingest would have stored it: upright (EXIF), resized by the dataset's ImageSpec.
    Through ingest's own safe path: the same formats, file-size, pixel, side and aspect caps, checked from
    the header before any pixel is decoded (a 109 KB PNG of 30000x30000 is refused at once). A ValueError
    says why it cannot be read."""
    try:
        if not isinstance(source, bytes):  # a file too big for the cap is refused unread
            size = Path(source).stat().st_size
            if size > ingest.max_file_bytes:
                raise ImageRejected("too_large", f"{size} bytes > max_file_bytes {ingest.max_file_bytes}")
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        with open_image(data, ingest) as im:
            return ingest_decode(im, ingest)
    except ImageRejected as exc:
        raise ValueError(f"cannot read image {_name(source)}: {exc.reason}: {exc.detail}") from exc
    except UnidentifiedImageError as exc:
        raise ValueError(f"cannot read image {_name(source)}: not an image format Pillow can identify") from exc
    except DECODE_ERRORS as exc:
        raise ValueError(f"cannot read image {_name(source)}: {exc}") from exc


def upright(image: Image.Image) -> Image.Image:
    return ImageOps.exif_transpose(image).convert("RGB")


def _name(source: Path | bytes) -> str:
    return "(bytes)" if isinstance(source, bytes) else str(source)
