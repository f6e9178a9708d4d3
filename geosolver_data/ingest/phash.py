"""64-bit DCT perceptual hash (the pHash of Zauner 2010, as the `imagehash` package computes it).

Near-identical images (re-encoded, resized, slightly recoloured) get hashes a few bits apart,
so near-duplicates are pairs within a small Hamming distance.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_N = 32
_K = 8
# Unnormalised DCT-II matrix (scipy.fftpack.dct's default): y[k] = 2 * sum_n x[n] cos(pi k (2n+1) / 2N).
_DCT = 2.0 * np.cos(np.pi * np.outer(np.arange(_N), 2 * np.arange(_N) + 1) / (2 * _N))
_LOW = _DCT[:_K]  # only the 8 lowest frequencies are kept, so compute only those rows


def phash_pixels(gray: np.ndarray) -> np.ndarray:
    """Hashes of a batch of 32x32 grayscale images: (B, 32, 32) float -> (B,) uint64."""
    low = _LOW @ gray @ _LOW.T  # (B, 8, 8): the low-frequency corner of the 2-D DCT
    flat = low.reshape(len(gray), _K * _K)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def hash_input(image: Image.Image) -> np.ndarray:
    """The 32x32 grayscale the hash is computed from (Lanczos, as imagehash does)."""
    small = image.convert("L").resize((_N, _N), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.float64)


def phash(image: Image.Image) -> int:
    """The 64-bit perceptual hash of one image, as a Python int in [0, 2**64)."""
    return int(phash_pixels(hash_input(image)[None])[0])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
