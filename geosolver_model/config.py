"""The model package's configuration: the spec's `model` and `index` sections, and the architecture
sizes a saved model carries. Plain pydantic and dataclasses, no torch: an ingest-only machine
validates a whole spec without installing the model stack.

`Spec` is the dataset spec with these sections typed; `load_spec` is what every command and the
Dagster code location use, so a typo under `model:` is caught before any run starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from geosolver_data import spec as data_spec
from geosolver_data.spec import DatasetSpec, Resolution, SpecSection

# The objective names; losses.LOSSES maps each to its loss (a test keeps the two in step).
Objective = Literal["soft_haversine", "infonce"]


class ModelConfig(SpecSection):
    """Fine-tuning settings. `base` is a Hugging Face id, a local folder, or "tiny" (built from a
    config, for offline demos and tests)."""

    base: Annotated[str, Field(min_length=1)] = "geolocal/StreetCLIP"
    objectives: Annotated[tuple[Objective, ...], Field(min_length=1)] = ("soft_haversine", "infonce")
    # The shared embedding space and the location encoder (GeoCLIP's sizes by default).
    embed_dim: Annotated[int, Field(ge=2)] = 512
    loc_features: Annotated[int, Field(ge=1)] = 256  # random Fourier features per scale
    loc_hidden: Annotated[int, Field(ge=1)] = 1024  # width of each scale's MLP
    loc_layers: Annotated[int, Field(ge=1)] = 3  # hidden layers of each scale's MLP
    # Where the location encoder (and, where sizes agree, the image head and temperature) starts:
    # random, or GeoCLIP's published weights from the `geoclip` package (GeoCLIP's sizes required).
    location_init: Literal["random", "geoclip"] = "random"
    # Also train the published objective from the other location_init, evaluated beside it.
    compare_location_init: bool = False
    # Where guesses are chosen from (training targets never are): `grid`, the centres of the H3 cells at
    # `gallery_resolution` that hold a populated place (split-independent, so a test photo's place is in it);
    # `train`, the training split's locations (one per cell; none inside a val/test block); `geoclip_mp16`,
    # GeoCLIP's 100K MP-16 GPS gallery. Several are joined.
    gallery: Annotated[tuple[Literal["grid", "train", "geoclip_mp16"], ...], Field(min_length=1)] = ("grid",)
    val_every: Annotated[int, Field(ge=0)] = 0  # steps between validation-split median errors (0 = never)
    steps: Annotated[int, Field(ge=1)] = 1000
    batch_size: Annotated[int, Field(ge=2)] = 32
    grad_accum: Annotated[int, Field(ge=1)] = 1
    lr: Annotated[float, Field(gt=0)] = 1e-5  # unfrozen vision blocks
    head_lr: Annotated[float, Field(gt=0)] = 1e-3  # location encoder and image head
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    warmup_steps: Annotated[int, Field(ge=0)] = 50
    unfreeze_last_blocks: Annotated[int, Field(ge=0)] = 2
    queue_size: Annotated[int, Field(ge=0)] = 1024
    soft_target_km: Annotated[float, Field(gt=0)] = 250.0
    # Candidates (in-batch and queued GPS) this close to an image's own location are the same place, not
    # negatives: infonce masks them out, soft_haversine counts them as the positive (0 = no mask).
    same_place_km: Annotated[float, Field(ge=0)] = 1.0
    checkpoint_every: Annotated[int, Field(ge=1)] = 200
    seed: Annotated[int, Field(ge=0)] = 0
    num_workers: Annotated[int, Field(ge=0, le=128)] = 0
    nproc: Annotated[int, Field(ge=1)] = 1  # processes (GPUs) for torchrun; 1 trains in-process
    # Where every model stage runs (train, validate, evaluate, embed, index, predict, play): auto = a CUDA GPU
    # when torch sees one, else the CPU; or cpu, cuda, cuda:N.
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")] = "auto"
    # auto = bf16 autocast on a GPU, fp32 on the CPU; bf16 forces autocast (on a CPU: slow, for tests).
    # The location encoder is fp32 under any of them.
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    gallery_resolution: Resolution = 5
    top_k: Annotated[int, Field(ge=1)] = 5
    eval_max_images: Annotated[int, Field(ge=0)] = 0  # 0 = the whole test split

    @field_validator("objectives", "gallery")
    @classmethod
    def _distinct(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(names)) != len(names):
            raise ValueError(f"each name once, got {list(names)}")
        return names

    @model_validator(mode="after")
    def _geoclip_sizes(self) -> ModelConfig:
        geoclip = {"embed_dim": 512, "loc_features": 256, "loc_hidden": 1024, "loc_layers": 3}
        if self.location_init == "geoclip" or self.compare_location_init:  # either run starts from GeoCLIP
            wrong = {k: getattr(self, k) for k, v in geoclip.items() if getattr(self, k) != v}
            if wrong:
                raise ValueError(f"GeoCLIP's weights need GeoCLIP's sizes {geoclip}; this spec has {wrong}")
        return self


class IndexConfig(SpecSection):
    """Embedding-index settings: the kind of FAISS index follows from the budget and the size."""

    memory_budget_gb: Annotated[float, Field(gt=0)] = 1.0
    recall_target: Annotated[float, Field(gt=0, le=1)] = 0.95  # recall@10 against exact search, held out
    neighbours: Annotated[int, Field(ge=1)] = 10  # image neighbours that vote in `geosolver predict`


class LocateConfig(SpecSection):
    """How `geosolver predict` and `play` blend the GPS-gallery guess with the image neighbours' vote
    (locate.py), the same in every evaluation's `locator` comparator. The defaults were chosen on the
    demo's validation split with `python -m bench.tune_locator` (the best mean GeoGuessr score of 60
    combinations), never on a test split; a real run should tune them on its own validation split."""

    vote_km: Annotated[float, Field(gt=0)] = 100.0  # a neighbour's vote decays as exp(-distance / vote_km)
    vote_temperature: Annotated[float, Field(gt=0)] = 0.01  # softmax temperature over neighbour similarities
    vote_weight: Annotated[float, Field(ge=0, le=1)] = 1.0  # the vote's share of a candidate's score


class Spec(DatasetSpec):
    """The whole spec: the dataset's keys plus the model's, the index's and the locator's."""

    model: ModelConfig = ModelConfig()
    index: IndexConfig = IndexConfig()
    locate: LocateConfig = LocateConfig()


@dataclass(frozen=True)
class GeoConfig:
    """The sizes a saved GeoRetriever is rebuilt from (its geo_config.json)."""

    embed_dim: int = 512
    loc_features: int = 256
    loc_hidden: int = 1024
    queue_size: int = 1024
    seed: int = 0
    loc_layers: int = 3

    @classmethod
    def of(cls, model: ModelConfig) -> GeoConfig:
        return cls(model.embed_dim, model.loc_features, model.loc_hidden, model.queue_size, model.seed,
                   model.loc_layers)


def parse_spec(raw: object) -> Spec:
    return data_spec.parse_spec(raw, Spec)  # type: ignore[return-value]


def load_spec(path: str | os.PathLike[str] | None = None) -> Spec:
    """The spec at `path`, else `$GEOSOLVER_SPEC`, else the bundled demo; every section validated."""
    return data_spec.load_spec(path, Spec)  # type: ignore[return-value]
