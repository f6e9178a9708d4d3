"""The retrieval geolocator: CLIP vision tower + image head, location encoder, shared space.

A saved model is a Hugging Face folder: the vision tower at its root (config.json +
model.safetensors, so stock `CLIPVisionModelWithProjection.from_pretrained(folder)` loads it), the
image processor (preprocessor_config.json, for `AutoImageProcessor.from_pretrained(folder)`), and
beside them the head, location encoder and temperature (geo.safetensors, sizes in geo_config.json)
and how raw photos are resized before the processor (ingest_image.json: the dataset's ImageSpec).
`GeoRetriever.from_pretrained(folder)` loads the whole geolocator. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPVisionModelWithProjection

from geosolver_data.model_spec import GEOCLIP_SIZES, ModelConfig
from geosolver_data.spec import ImageSpec
from geosolver_model.net import device as devices
from geosolver_model.net.clip import load_processing, load_vision
from geosolver_model.net.hub import hub_folder, is_hub_id
from geosolver_model.net.images import Processing, open_photo, to_pixels
from geosolver_model.net.location_encoder import LocationEncoder

GEO_WEIGHTS = "geo.safetensors"
# What `save` writes and `from_pretrained` reads (the card and train.json besides are for people).
SAVED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", GEO_WEIGHTS, "geo_config.json",
               "ingest_image.json")


@dataclass(frozen=True)
class GeoConfig:
    """The sizes a saved GeoRetriever is rebuilt from (its geo_config.json; `loc_layers` defaults for
    models saved before it was a setting)."""

    embed_dim: int
    loc_features: int
    loc_hidden: int
    queue_size: int
    seed: int = 0
    loc_layers: int = GEOCLIP_SIZES["loc_layers"]

    @classmethod
    def of(cls, model: ModelConfig) -> GeoConfig:
        return cls(model.embed_dim, model.loc_features, model.loc_hidden, model.queue_size, model.seed,
                   model.loc_layers)


class GeoRetriever(nn.Module):
    def __init__(self, vision: CLIPVisionModelWithProjection, config: GeoConfig, processing: Processing,
                 ingest: ImageSpec | None = None) -> None:
        super().__init__()
        self.config = config
        self.vision = vision
        self.processing = processing  # the base's CLIPImageProcessor settings
        self.ingest = ingest or ImageSpec(min_side=processing.shortest_edge)  # how raw photos are resized
        width = vision.config.projection_dim
        with torch.random.fork_rng(devices=[]):  # seeded head, without touching the caller's RNG
            torch.manual_seed(config.seed)
            self.image_head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, config.embed_dim))
        self.location = LocationEncoder(config.embed_dim, config.loc_features, config.loc_hidden, config.loc_layers,
                                        seed=config.seed)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        # GPS of past batches, extra negatives; buffers so checkpoints carry them
        self.register_buffer("queue", torch.zeros(config.queue_size, 2))
        self.register_buffer("queue_len", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        # `model.precision`: bf16 autocast for the vision tower on a GPU ("auto"); not saved with the weights
        self.precision: devices.Precision = "auto"

    @property
    def device(self) -> torch.device:
        return devices.of(self)

    @property
    def image_size(self) -> int:
        return int(self.vision.config.image_size)

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """A stored-size image (a shard row, or a photo through `photo`) -> (3, S, S)."""
        return to_pixels(image, self.processing)

    def photo(self, source: Path | bytes) -> Image.Image:
        """A raw photo, upright and resized as ingest stored the training images."""
        return open_photo(source, self.ingest)

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised pixels (moved to the model's device) -> (B, D) fp32 unit vectors, under
        bf16 autocast where `precision` asks for it."""
        dev = self.device
        with devices.autocast(dev, self.precision):
            out = self.image_head(self.vision(pixel_values=pixels.to(dev)).image_embeds)
        return F.normalize(out.float(), dim=-1)

    def encode_gps(self, latlon: torch.Tensor) -> torch.Tensor:
        """(N, 2) degrees (moved to the model's device) -> (N, D) fp32 unit vectors."""
        return F.normalize(self.location(latlon.to(self.device)), dim=-1)

    def forward(self, pixels: torch.Tensor, latlon: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image embeddings (B, D) and GPS embeddings (N, D) in one call, so DDP sees one forward."""
        return self.encode_images(pixels), self.encode_gps(latlon)

    def queued_gps(self) -> torch.Tensor | None:
        if self.queue.shape[0] == 0:
            return None
        n = int(self.queue_len)
        return self.queue[:n] if n else None

    @torch.no_grad()
    def enqueue(self, latlon: torch.Tensor) -> None:
        size = self.queue.shape[0]
        if size == 0:
            return
        latlon = latlon[-size:]
        idx = (int(self.queue_ptr) + torch.arange(len(latlon), device=self.queue.device)) % size
        self.queue[idx] = latlon.to(self.queue)
        self.queue_ptr.fill_((int(self.queue_ptr) + len(latlon)) % size)
        self.queue_len.fill_(min(size, int(self.queue_len) + len(latlon)))

    def freeze_vision_except_last(self, blocks: int) -> None:
        """Train only the last `blocks` transformer blocks, the post-norm and the projection."""
        for p in self.vision.parameters():
            p.requires_grad = False
        layers = self.vision.vision_model.encoder.layers
        trainable = [*layers[len(layers) - blocks:]] if blocks > 0 else []
        trainable += [self.vision.vision_model.post_layernorm, self.vision.visual_projection]
        for module in trainable:
            for p in module.parameters():
                p.requires_grad = True

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.vision.save_pretrained(folder, safe_serialization=True)
        self.processing.save(folder)
        rest = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not k.startswith("vision.")}
        save_file(rest, folder / GEO_WEIGHTS)
        (folder / "geo_config.json").write_text(json.dumps(asdict(self.config), indent=2))
        (folder / "ingest_image.json").write_text(self.ingest.model_dump_json(indent=2))

    @classmethod
    def from_pretrained(cls, source: str | Path, device: str | torch.device = "auto",
                        precision: devices.Precision = "auto", revision: str | None = None) -> GeoRetriever:
        """A saved geolocator (see the module's docstring), on `device` ("auto": a CUDA GPU when present):
        a folder (`str` or `Path`), or a Hub id (`owner/name`, at `revision`, default `main`) that is not a
        local folder, fetched through huggingface_hub's cache (net/hub.py)."""
        folder = Path(source).expanduser()
        if not folder.is_dir() and isinstance(source, str) and is_hub_id(source):
            folder, _ = hub_folder(source, SAVED_FILES, revision)
        elif not folder.is_dir():
            raise FileNotFoundError(f"{source}: no such model folder (nor a Hub id, owner/name)")
        vision = CLIPVisionModelWithProjection.from_pretrained(folder, use_safetensors=True)
        config = GeoConfig(**json.loads((folder / "geo_config.json").read_text()))
        ingest = ImageSpec.model_validate_json((folder / "ingest_image.json").read_text())
        model = cls(vision, config, Processing.load(folder), ingest)
        missing, unexpected = model.load_state_dict(load_file(folder / GEO_WEIGHTS), strict=False)
        if unexpected or any(not k.startswith("vision.") for k in missing):
            raise ValueError(f"{folder}: weights do not match the model (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        model.precision = precision
        return model.to(devices.resolve(device) if isinstance(device, str) else device)

    @classmethod
    def from_base(cls, base: str, config: GeoConfig, ingest: ImageSpec | None = None,
                  revision: str = "main") -> GeoRetriever:
        vision = load_vision(base, revision)
        return cls(vision, config, load_processing(base, vision, revision), ingest)
