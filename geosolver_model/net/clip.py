"""The base CLIP: StreetCLIP (or any CLIP) from the hub or a folder, or a tiny one built from a config.

"tiny" exists so the offline demo and tests run without downloads: seeded, so every process builds
the same weights, with StreetCLIP's input geometry (336 px, 14-px patches) but narrow and shallow.
"tiny-64" is the same at 64 px in 8-px patches, for tests that train many steps. Real specs name
`geolocal/StreetCLIP` (CLIP ViT-L/14 at 336 px).
"""

from __future__ import annotations

import torch
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)
from transformers.utils import logging as hf_logging

from geosolver_data.errors import GeosolverError
from geosolver_model.net.images import Processing

hf_logging.disable_progress_bar()  # progress bars would flood Dagster's captured logs
hf_logging.set_verbosity_error()

TINY = "tiny"
TINY_64 = "tiny-64"
STREETCLIP = "geolocal/StreetCLIP"


class BaseModelUnavailable(GeosolverError, RuntimeError):
    """The base model's weights cannot be loaded; the message says how to provide them."""


# The vision towers built from a config: StreetCLIP's geometry, and a 64-px one for fast tests.
_TINY_VISION = {
    # 336 px in 14-px patches (577 tokens), narrow and shallow so a CPU trains it: shape and
    # interpolation bugs of the real model cannot hide behind a toy input size.
    TINY: {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
           "image_size": 336, "patch_size": 14},
    TINY_64: {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 4,
              "image_size": 64, "patch_size": 8},
}


def is_tiny(name: str) -> bool:
    return name in _TINY_VISION


def tiny_config(name: str = TINY) -> CLIPConfig:
    vocab = 2 * 256 + 2  # byte-level characters, with and without end-of-word, plus two specials
    return CLIPConfig(
        text_config={"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 2, "num_hidden_layers": 2,
                     "vocab_size": vocab, "max_position_embeddings": 77, "bos_token_id": vocab - 2,
                     "eos_token_id": vocab - 1, "pad_token_id": vocab - 1},
        vision_config=_TINY_VISION[name],
        projection_dim=64,
    )


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins for bytes that byte-level BPE (GPT-2, CLIP) uses."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def tiny_tokenizer() -> CLIPTokenizer:
    """A character-level CLIP tokenizer (no merges), built in memory: nothing to download."""
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": 256 + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": 512, "<|endoftext|>": 513}
    return CLIPTokenizer(vocab=vocab, merges=[])


def _unavailable(name: str, revision: str, exc: Exception) -> BaseModelUnavailable:
    reason = " ".join(f"{exc.__class__.__name__}: {exc}".split())[:240]
    return BaseModelUnavailable(
        f"cannot load base model {name}@{revision} ({reason}): fetch it beforehand where the Hub is reachable "
        f"(`hf download {name} --revision {revision}`) and set HF_HUB_OFFLINE=1 to load it from the cache, or "
        "set `model.base` to a local folder holding it, or to `tiny` for a small offline model")


def load_clip(name: str, revision: str = "main") -> tuple[CLIPModel, CLIPTokenizer, Processing]:
    """The full CLIP (text + vision), its tokenizer and image processing, for zero-shot prompts."""
    if is_tiny(name):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            clip = CLIPModel(tiny_config(name)).eval()
        return clip, tiny_tokenizer(), Processing.for_size(int(clip.config.vision_config.image_size))
    try:
        clip = CLIPModel.from_pretrained(name, revision=revision, use_safetensors=True).eval()
        return clip, CLIPTokenizer.from_pretrained(name, revision=revision), Processing.load(name, revision)
    except (OSError, ValueError) as exc:
        raise _unavailable(name, revision, exc) from exc


def load_processing(name: str, vision: CLIPVisionModelWithProjection, revision: str = "main") -> Processing:
    """The base's image processor settings: its preprocessor_config.json, or for a model built from a
    config (tiny), CLIP's processor at the model's input size."""
    if is_tiny(name):
        return Processing.for_size(int(vision.config.image_size))
    try:
        return Processing.load(name, revision)
    except (OSError, ValueError) as exc:
        raise _unavailable(name, revision, exc) from exc


def load_vision(name: str, revision: str = "main") -> CLIPVisionModelWithProjection:
    """The vision tower with its projection: the part that is fine-tuned."""
    if is_tiny(name):
        cfg = tiny_config(name)
        vision = CLIPVisionConfig(**{**cfg.vision_config.to_dict(), "projection_dim": cfg.projection_dim})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return CLIPVisionModelWithProjection(vision)
    try:
        return CLIPVisionModelWithProjection.from_pretrained(name, revision=revision, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise _unavailable(name, revision, exc) from exc
