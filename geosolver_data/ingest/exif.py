"""Read and write the EXIF fields a geotagged photo carries: GPS position and capture time."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from fractions import Fraction

from PIL import ExifTags, Image

_GPS = ExifTags.IFD.GPSInfo
_EXIF = ExifTags.IFD.Exif
_DATETIME_ORIGINAL = 0x9003
_DATETIME = 0x0132
_FORMAT = "%Y:%m:%d %H:%M:%S"


def _degrees(dms: object, ref: object) -> float:
    d, m, s = (float(x) for x in dms)  # type: ignore[union-attr]
    value = d + m / 60.0 + s / 3600.0
    return -value if str(ref).strip().upper() in ("S", "W") else value


def read_gps(exif: Image.Exif) -> tuple[float, float] | None:
    """(lat, lon) in degrees from the GPS IFD, or None when the photo has no usable GPS tags."""
    gps = exif.get_ifd(_GPS)
    try:
        lat = _degrees(gps[2], gps.get(1, "N"))
        lon = _degrees(gps[4], gps.get(3, "E"))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return lat, lon


def read_captured_at(exif: Image.Exif) -> datetime | None:
    """DateTimeOriginal (else DateTime), read as UTC; None when absent or malformed."""
    text = exif.get_ifd(_EXIF).get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
    try:
        return datetime.strptime(str(text).strip("\x00 "), _FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def _dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
    value = abs(value)
    d = math.floor(value)
    m = math.floor((value - d) * 60)
    s = (value - d - m / 60) * 3600
    return Fraction(d), Fraction(m), Fraction(round(s * 10000), 10000)


def make_exif(lat: float, lon: float, captured_at: datetime, orientation: int = 1) -> Image.Exif:
    """EXIF with GPS, capture time and orientation, as a camera would write it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif.get_ifd(_EXIF)[_DATETIME_ORIGINAL] = captured_at.strftime(_FORMAT)
    gps = exif.get_ifd(_GPS)
    gps[1] = "N" if lat >= 0 else "S"
    gps[2] = _dms(lat)
    gps[3] = "E" if lon >= 0 else "W"
    gps[4] = _dms(lon)
    return exif
