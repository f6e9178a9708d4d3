import hashlib
import io

import imagehash
import numpy as np
import pytest
from PIL import Image

from geosolver_data.ingest.exif import read_captured_at, read_gps
from geosolver_data.ingest.images import ImageRejected, process_image
from geosolver_data.ingest.phash import hamming, phash
from geosolver_data.spec import ImageSpec
from tests.data.images_util import encode, noise_image

SPEC = ImageSpec(jpeg_quality=90, max_pixels=4_000_000, max_file_bytes=2_000_000)  # short side 336, long <= 672


def test_jpeg_is_resized_reencoded_and_hashed() -> None:
    out = process_image(encode(noise_image(0), quality=95), SPEC)
    assert (out.width, out.height) == (448, 336)
    assert out.sha256 == hashlib.sha256(out.jpeg).hexdigest()
    with Image.open(io.BytesIO(out.jpeg)) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (448, 336)
        assert not im.getexif()  # location lives in columns; EXIF is stripped
    assert process_image(encode(noise_image(0), quality=95), SPEC) == out  # deterministic


def test_small_images_are_not_upscaled() -> None:
    out = process_image(encode(noise_image(1, (200, 100))), SPEC)
    assert (out.width, out.height) == (200, 100)


@pytest.mark.parametrize(("size", "spec", "stored"), [
    ((1024, 768), SPEC, (448, 336)),  # the short side at the model's input size
    ((768, 1024), SPEC, (336, 448)),
    ((2000, 600), SPEC, (672, 202)),  # wider than 2:1: the long side's cap wins
    ((400, 300), SPEC, (400, 300)),  # never upscaled
    ((1024, 768), ImageSpec(fit="long_side", max_side=336), (336, 252)),  # the behaviour before
])
def test_stored_size_keeps_the_short_side_the_model_needs(size: tuple[int, int], spec: ImageSpec,
                                                          stored: tuple[int, int]) -> None:
    assert spec.target_size(*size) == stored
    out = process_image(encode(noise_image(5, size), quality=95), spec)
    assert (out.width, out.height) == stored


def test_exif_orientation_is_applied() -> None:
    upright = Image.new("RGB", (1000, 500), (255, 0, 0))
    upright.paste((0, 0, 255), (0, 0, 500, 500))  # left half blue
    # A camera held sideways stores the sensor image rotated and says "rotate 90 CW" (6).
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    out = process_image(encode(stored, lat=1.0, lon=2.0, orientation=6, quality=95), SPEC)
    assert (out.width, out.height) == (672, 336)
    with Image.open(io.BytesIO(out.jpeg)) as im:
        left, right = im.getpixel((80, 168)), im.getpixel((600, 168))
    assert left[2] > 200 and left[0] < 60, left
    assert right[0] > 200 and right[2] < 60, right


def test_png_with_alpha_and_webp_are_accepted() -> None:
    rgba = Image.new("RGBA", (100, 80), (0, 0, 0, 0))
    out = process_image(encode(rgba, "PNG"), SPEC)
    with Image.open(io.BytesIO(out.jpeg)) as im:
        assert min(im.getpixel((50, 40))) > 240  # transparent becomes white, not black
    assert process_image(encode(noise_image(2), "WEBP"), SPEC).height == 336


@pytest.mark.parametrize(("data", "reason"), [
    (b"<html>rate limited</html>", "not_an_image"),
    (encode(noise_image(3))[:3000], "undecodable"),
    (encode(Image.new("L", (3000, 3000)), "PNG"), "too_many_pixels"),
    (encode(noise_image(4), "GIF"), "unsupported_format"),
])
def test_bad_input_is_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected) as err:
        process_image(data, SPEC)
    assert err.value.reason == reason


def test_decompression_bomb_is_rejected_before_decoding() -> None:
    bomb = encode(Image.new("1", (30_000, 30_000)), "PNG")  # 900 Mpx in a small file
    assert len(bomb) < 200_000
    with pytest.raises(ImageRejected, match="too_many_pixels"):
        process_image(bomb, SPEC)


def test_oversize_file_is_rejected() -> None:
    with pytest.raises(ImageRejected, match="too_large"):
        process_image(b"\xff\xd8" + b"0" * 2_000_001, SPEC)


def test_exif_gps_and_time_round_trip() -> None:
    data = encode(noise_image(5), lat=-33.8688, lon=151.2093)
    with Image.open(io.BytesIO(data)) as im:
        lat, lon = read_gps(im.getexif())
        assert abs(lat + 33.8688) < 1e-6 and abs(lon - 151.2093) < 1e-6
        assert read_captured_at(im.getexif()).isoformat() == "2020-06-01T12:00:00+00:00"
    with Image.open(io.BytesIO(encode(noise_image(5)))) as im:
        assert read_gps(im.getexif()) is None and read_captured_at(im.getexif()) is None


@pytest.mark.parametrize("seed", range(8))
def test_phash_matches_the_imagehash_reference(seed: int) -> None:
    image = noise_image(seed, (300 + seed * 7, 200))
    assert phash(image) == int(str(imagehash.phash(image)), 16)


def test_near_copies_are_close_and_different_images_are_far() -> None:
    a = noise_image(10)
    near = a.resize((576, 432)).point(lambda v: min(255, int(v * 1.03)))
    near_out = process_image(encode(near, quality=75), SPEC)
    a_out = process_image(encode(a, quality=95), SPEC)
    assert hamming(a_out.phash, near_out.phash) <= 4
    others = [process_image(encode(noise_image(s)), SPEC).phash for s in range(11, 21)]
    assert min(hamming(a_out.phash, o) for o in others) > 10
    assert np.uint64(a_out.phash) == a_out.phash


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height (8-bit grey) and holds a few bytes of data: a bomb's header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_every_decode_path_refuses_a_bomb_from_its_header() -> None:
    """Ingest and the model's raw-photo path (predict, play uploads, public test sets) share one safe decode."""
    from geosolver_model.net.images import open_photo

    bomb = png_header_only(30_000, 30_000)
    with pytest.raises(ImageRejected, match="too_many_pixels"):
        process_image(bomb, SPEC)
    with pytest.raises(ValueError, match="too_many_pixels: 30000x30000"):  # from the header: no pixel data here
        open_photo(bomb, ImageSpec())
    tiff = io.BytesIO()
    noise_image(3, (400, 300)).save(tiff, "TIFF")
    with pytest.raises(ValueError, match="unsupported_format: TIFF"):  # what ingest refuses, predict refuses
        open_photo(tiff.getvalue(), ImageSpec())


@pytest.mark.parametrize(("size", "reason"), [((1, 1), "too_small"), ((6000, 20), "too_small"),
                                              ((3000, 600), "bad_aspect_ratio")])
def test_images_a_model_cannot_use_are_rejected_with_a_reason(size: tuple[int, int], reason: str) -> None:
    with pytest.raises(ImageRejected, match=reason):
        process_image(encode(noise_image(4, size)), SPEC)


def test_a_panorama_passes() -> None:
    out = process_image(encode(noise_image(5, (2048, 1024))), SPEC)  # equirectangular 2:1
    assert (out.width, out.height) == (672, 336)


def test_a_16_bit_grey_png_is_scaled_not_clipped() -> None:
    """A mid-grey 16-bit PNG: Pillow's plain convert clips it at 255 (nearly all white)."""
    values = np.linspace(0, 65535, 400 * 300).reshape(300, 400).astype(np.uint16)
    png = io.BytesIO()
    Image.fromarray(values).save(png, "PNG")
    out = process_image(png.getvalue(), SPEC)
    with Image.open(io.BytesIO(out.jpeg)) as im:
        mean = np.asarray(im.convert("L"), dtype=np.float64).mean()
    assert abs(mean - 127.5) < 3, mean
