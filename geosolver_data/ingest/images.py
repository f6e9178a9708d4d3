"""Ingest-time image work, done once per image: validate, decode, orient, resize, re-encode, hash.

Everything later in the pipeline works on the metadata this produces; the JPEG bytes are only
copied again when the final shards are written.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from geosolver_data.ingest.phash import phash
from geosolver_data.spec import ImageSpec

ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP"})
# What Pillow raises on bytes it cannot read, besides UnidentifiedImageError: a truncated header is an
# OSError, a broken marker a SyntaxError, a bad chunk a ValueError or struct.error, and so on. Each is
# about the one image, so each is a reject, never the end of the run.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError, ZeroDivisionError,
    Image.DecompressionBombError, Image.DecompressionBombWarning,
)
# Pillow's own bomb guard fires at 2x this; our spec's max_pixels is checked first, from the header.
Image.MAX_IMAGE_PIXELS = None


IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


def looks_like_image(head: bytes) -> bool:
    """Starts with a JPEG, PNG or WebP signature."""
    return head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


class ImageRejected(Exception):
    """An image that cannot enter the dataset; `reason` is a short category for the rejects table."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ProcessedImage:
    jpeg: bytes
    width: int
    height: int
    sha256: str
    phash: int


def open_image(data: bytes, spec: ImageSpec) -> Image.Image:
    """Open (header only) and validate size, type and pixel count before any pixel is decoded."""
    if len(data) > spec.max_file_bytes:
        raise ImageRejected("too_large", f"{len(data)} bytes > max_file_bytes {spec.max_file_bytes}")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        if looks_like_image(data[:16]):  # an image's signature, then bytes no decoder makes sense of
            raise ImageRejected("undecodable", "starts like a JPEG, PNG or WebP image, then cannot be read") from exc
        raise ImageRejected("not_an_image", "not a JPEG, PNG or WebP image") from exc
    except DECODE_ERRORS as exc:  # recognised, but its header is cut short or broken
        raise ImageRejected("undecodable", f"{type(exc).__name__}: {exc}"[:200]) from exc
    if image.format not in ACCEPTED_FORMATS:
        raise ImageRejected("unsupported_format", str(image.format))
    width, height = image.size
    if width * height > spec.max_pixels:
        raise ImageRejected("too_many_pixels", f"{width}x{height} > max_pixels {spec.max_pixels}")
    if min(width, height) < spec.min_source_side:
        raise ImageRejected("too_small", f"{width}x{height}: short side < min_source_side {spec.min_source_side}")
    if max(width, height) > spec.max_aspect * min(width, height):
        raise ImageRejected("bad_aspect_ratio", f"{width}x{height}: more than max_aspect {spec.max_aspect:g}:1")
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit or 32-bit (integer or float) grayscale image as 8-bit "L", its values scaled, not clipped:
    Pillow's own convert("RGB") clips a 16-bit PNG at 255, so a mid-grey photo came out nearly all white."""
    values = np.asarray(image, dtype=np.float64)
    top = 255.0 if values.max(initial=0) <= 255 else 65535.0 if values.max() <= 65535 else float(values.max())
    low = min(0.0, float(values.min(initial=0)))
    scaled = (values - low) / max(top - low, 1e-12) * 255
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        return _to_8bit(image).convert("RGB")
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


ORIENTATION = 0x0112  # the EXIF tag


def decode(image: Image.Image, spec: ImageSpec) -> Image.Image:
    """Decode to an upright RGB image of the size `spec` stores (ImageSpec.target_size).

    For JPEG, `draft` lets libjpeg decode at 1/2, 1/4 or 1/8 scale directly: most of the
    ingest speed comes from never decoding pixels that the resize would throw away.
    """
    if image.format in ("JPEG", "MPO"):
        image.draft("RGB", spec.target_size(*image.size))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            # exif_transpose copies the pixels even when there is nothing to turn: most photos.
            needs_turn = image.getexif().get(ORIENTATION, 1) not in (1, None)
            upright = ImageOps.exif_transpose(image) if needs_turn else image
    except DECODE_ERRORS as exc:
        raise ImageRejected("undecodable", f"{type(exc).__name__}: {exc}"[:200]) from exc
    rgb = _to_rgb(upright)
    size = spec.target_size(*rgb.size)
    if size != rgb.size:
        rgb = rgb.resize(size, Image.Resampling[spec.resample.upper()], reducing_gap=3.0)
    return rgb


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)  # no EXIF: location lives in columns, not in the bytes
    return out.getvalue()


def process_image(data: bytes, spec: ImageSpec) -> ProcessedImage:
    """Bytes from any source -> the normalised JPEG and its hashes, or ImageRejected."""
    return process_opened(open_image(data, spec), spec)


def process_opened(image: Image.Image, spec: ImageSpec) -> ProcessedImage:
    """An image from `open_image` (whose EXIF the caller may have read) -> JPEG and hashes."""
    rgb = decode(image, spec)
    jpeg = encode_jpeg(rgb, spec.jpeg_quality)
    return ProcessedImage(
        jpeg=jpeg,
        width=rgb.width,
        height=rgb.height,
        sha256=hashlib.sha256(jpeg).hexdigest(),
        phash=phash(rgb),
    )
