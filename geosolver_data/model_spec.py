"""The spec's `model`, `index` and `locate` sections, and the whole `Spec` (the dataset's keys plus
these). They sit here, at the bottom, beside the dataset's sections: every layer reads the one
document (the Dagster layer never imports the model package for it), and an ingest-only machine
validates a whole spec without the model stack. Plain pydantic, no torch.

`load_spec` is what every command and the Dagster code location use, so a typo under `model:` is
caught before any run starts.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from geosolver_data import spec as data_spec
from geosolver_data.spec import DatasetSpec, Resolution, SpecSection

# GeoCLIP's sizes (Vivanco et al. 2023): the defaults, and what its published weights need. Declared once.
GEOCLIP_SIZES = {"embed_dim": 512, "loc_features": 256, "loc_hidden": 1024, "loc_layers": 3}

# The objective names; losses.LOSSES maps each to its loss (a test keeps the two in step).
Objective = Literal["soft_haversine", "infonce"]


class ModelConfig(SpecSection):
    """Fine-tuning settings. `base` is a Hugging Face id, a local folder, or "tiny" (built from a
    config, for offline demos and tests)."""

    base: Annotated[str, Field(min_length=1)] = "geolocal/StreetCLIP"
    """hub id, local folder, or `tiny`"""
    revision: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,127}$")] = "main"
    """the Hub revision of `base` (a branch, tag or commit); the commit actually loaded is recorded in the model's
    manifest and card, and is part of the model version, so a moved branch trains a new model. Pin a commit for a
    run others can repeat; `HF_HUB_OFFLINE=1` loads a revision fetched before from the Hugging Face cache
    """
    objectives: Annotated[tuple[Objective, ...], Field(min_length=1)] = ("soft_haversine", "infonce")
    """objectives to train; the first is published as `finetuned`"""
    embed_dim: Annotated[int, Field(ge=2)] = GEOCLIP_SIZES["embed_dim"]
    """dimension of the shared image/GPS embedding space (the demo's tiny model: 64)"""
    loc_features: Annotated[int, Field(ge=1)] = GEOCLIP_SIZES["loc_features"]
    """location encoder: random Fourier features per scale (GeoCLIP: 256; the demo: 64)"""
    loc_hidden: Annotated[int, Field(ge=1)] = GEOCLIP_SIZES["loc_hidden"]
    """location encoder: width of each scale's MLP (GeoCLIP: 1024; the demo: 128)"""
    loc_layers: Annotated[int, Field(ge=1)] = GEOCLIP_SIZES["loc_layers"]
    """location encoder: hidden layers of each scale's MLP (GeoCLIP: 3; the demo: 2)"""
    location_init: Literal["random", "geoclip"] = "random"
    """`geoclip`: start the location encoder (and where sizes agree the image head and temperature) from GeoCLIP's
    weights
    """
    compare_location_init: bool = False
    """also train the published objective from the other `location_init`, evaluated beside it"""
    gallery: Annotated[tuple[Literal["grid", "train", "geoclip_mp16"], ...], Field(min_length=1)] = ("grid",)
    """where guesses are chosen from (evaluation, `predict`, `play`; training never uses it): `grid` (centres of the H3
    cells at `gallery_resolution` that hold a populated place: split-independent, ~65K at res 5), `train` (the
    training locations, one per cell: none inside a validation or test block) and/or `geoclip_mp16` (GeoCLIP's
    100K MP-16 gallery); several are joined
    """
    val_every: Annotated[int, Field(ge=0)] = 0
    """steps between validation-split median errors in the training curve (0 = never)"""
    steps: Annotated[int, Field(ge=1)] = 1000
    """optimizer steps per objective"""
    batch_size: Annotated[int, Field(ge=2)] = 32
    """images per micro-batch and process"""
    grad_accum: Annotated[int, Field(ge=1)] = 1
    """micro-batches per optimizer step"""
    lr: Annotated[float, Field(gt=0)] = 1e-5
    """peak learning rate of the unfrozen vision blocks"""
    head_lr: Annotated[float, Field(gt=0)] = 1e-3
    """peak learning rate of the image head, the location encoder and the temperature"""
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    """AdamW's decay, on weight matrices only (never biases, norms or the temperature)"""
    warmup_steps: Annotated[int, Field(ge=0)] = 50
    """linear warmup before the cosine decay (to 10% of the peak)"""
    unfreeze_last_blocks: Annotated[int, Field(ge=0)] = 2
    """vision transformer blocks that train (plus post-norm and projection)"""
    queue_size: Annotated[int, Field(ge=0)] = 1024
    """past GPS kept as extra negatives"""
    soft_target_km: Annotated[float, Field(gt=0)] = 250.0
    """τ of the soft haversine targets"""
    same_place_km: Annotated[float, Field(ge=0)] = 1.0
    """a candidate (in-batch or queued GPS) this close to an image's own location is its place, not a negative:
    `infonce` masks it out, `soft_haversine` gives it the positive's weight (0 = no mask)
    """
    checkpoint_every: Annotated[int, Field(ge=1)] = 200
    """steps between checkpoints"""
    seed: Annotated[int, Field(ge=0)] = 0
    """seed of the initialisation, the data order and the augmentation"""
    num_workers: Annotated[int, Field(ge=0, le=128)] = 0
    """data-loader worker processes per training process"""
    nproc: Annotated[int, Field(ge=1)] | None = None
    """processes for `torchrun` (one per GPU); 1 trains in the asset's process. Default: the GPUs each model step
    gets (`compute.gpus`), at least 1
    """
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")] = "auto"
    """where every model stage runs (training, validation, evaluation, embedding, index building, `predict`, `play`):
    `auto` = a CUDA GPU when torch sees one (under torchrun, each process's own), else the CPU; or `cpu`, `cuda`,
    `cuda:N`. Not part of the model or evaluation version
    """
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """`auto` = bf16 autocast on a GPU, fp32 on the CPU; `bf16` forces autocast (slow on a CPU), `fp32` turns it off.
    The location encoder computes in fp32 under all of them
    """
    gallery_resolution: Resolution = 5
    """H3 resolution of the `grid` gallery's cells, and at which training locations are deduplicated into the `train`
    gallery
    """
    top_k: Annotated[int, Field(ge=1)] = 5
    """gallery candidates refined per image"""
    eval_max_images: Annotated[int, Field(ge=0)] = 0
    """cap on images per test set (0 = all)"""

    @field_validator("objectives", "gallery")
    @classmethod
    def _distinct(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(names)) != len(names):
            raise ValueError(f"each name once, got {list(names)}")
        return names

    @model_validator(mode="after")
    def _geoclip_sizes(self) -> ModelConfig:
        if self.location_init == "geoclip" or self.compare_location_init:  # either run starts from GeoCLIP
            wrong = {k: getattr(self, k) for k, v in GEOCLIP_SIZES.items() if getattr(self, k) != v}
            if wrong:
                raise ValueError(f"GeoCLIP's weights need GeoCLIP's sizes {GEOCLIP_SIZES}; this spec has {wrong}")
        return self


class IndexConfig(SpecSection):
    """Embedding-index settings: the kind of FAISS index follows from the budget and the size."""

    memory_budget_gb: Annotated[float, Field(gt=0)] = 1.0
    """memory the index may take; decides Flat / HNSW / IVF-SQ8 / OPQ-IVF-PQ"""
    recall_target: Annotated[float, Field(gt=0, le=1)] = 0.95
    """recall@10 against exact search the search parameter is tuned to"""
    neighbours: Annotated[int, Field(ge=1)] = 10
    """image neighbours that vote in `geosolver predict`, `play` and the `locator` comparator"""


class LocateConfig(SpecSection):
    """How `geosolver predict` and `play` blend the GPS-gallery guess with the image neighbours' vote
    (retrieval/locate.py), the same in every evaluation's `locator` comparator. The vote's defaults were chosen on the
    demo's validation split with `python -m bench.tune_locator` (the best mean GeoGuessr score of 60
    combinations), never on a test split; a real run should tune them on its own validation split."""

    vote_km: Annotated[float, Field(gt=0)] = 100.0
    """a neighbour's vote for a candidate decays as exp(−distance / vote_km)"""
    vote_temperature: Annotated[float, Field(gt=0)] = 0.01
    """softmax temperature over the neighbours' similarities"""
    vote_weight: Annotated[float, Field(ge=0, le=1)] = 1.0
    """the vote's share of a candidate's score (the rest: the gallery's softmax, scaled to a maximum of 1; the
    gallery's candidates stay candidates at any weight). All three were chosen on the demo's validation split with
    `python -m bench.tune_locator` (the best mean GeoGuessr score of its 60 combinations: 3,225 points and a 484 km
    median, against 2,024 and 1,781 km for the earlier hand-set 25 km / 0.05 / 0.5), with the tiny model; tune them
    on your own validation split
    """
    min_separation_km: Annotated[float, Field(ge=0)] = 5.0
    """top-k candidates are distinct places: none within this distance of a better one (0 keeps them all)"""


Quantity = Annotated[str, Field(pattern=r"^([0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?)?$")]  # Kubernetes'


class Toleration(SpecSection):
    """A Kubernetes toleration, as a pod spec writes it."""

    key: Annotated[str, Field(min_length=1)]
    """the taint's key, e.g. `nvidia.com/gpu`"""
    operator: Literal["Exists", "Equal"] = "Exists"
    """`Exists` (any value) or `Equal` (the `value` below)"""
    value: str = ""
    """the taint's value, with `Equal`"""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    """the taint's effect; empty tolerates them all"""


class ComputeConfig(SpecSection):
    """Where the steps that run the model (fine-tuning, evaluation, embedding, the indexes) run when each step
    is a Kubernetes pod (`GEOSOLVER_EXECUTOR=k8s`) or a Celery task (`celery`); ingest and the dataset
    steps never get these. Read by the Dagster layer as the tags dagster-k8s and dagster-celery understand."""

    gpus: Annotated[int, Field(ge=0, le=64)] = 0
    """GPUs per model step (the pod requests `nvidia.com/gpu`); also `model.nproc`'s default"""
    memory: Quantity = ""
    """memory per model step, requested and limited (e.g. `64Gi`); empty: the executor's default"""
    cpu: Quantity = ""
    """CPUs per model step, requested (e.g. `8`); empty: the executor's default"""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """labels of the nodes model steps may run on, e.g. `{cloud.google.com/gke-accelerator: nvidia-l4}`"""
    tolerations: tuple[Toleration, ...] = ()
    """taints of a GPU node pool the model steps tolerate, e.g. `[{key: nvidia.com/gpu, effect: NoSchedule}]`"""
    image: str = ""
    """another container image for the model steps (e.g. one built with CUDA); empty: the deployment's"""
    celery_queue: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]*$")] = "gpu"
    """the dagster-celery queue model steps go to when `gpus` > 0 (a worker started with `-q gpu` on a GPU box)"""


class Spec(DatasetSpec):
    """The whole spec: the dataset's keys plus the model's, the index's and the locator's."""

    model: ModelConfig = ModelConfig()
    """fine-tuning, evaluation and where the model runs (the `model.…` keys)"""
    index: IndexConfig = IndexConfig()
    """the FAISS indexes (the `index.…` keys)"""
    locate: LocateConfig = LocateConfig()
    """how `predict` and `play` blend the gallery guess with the neighbours' vote (the `locate.…` keys)"""
    compute: ComputeConfig = ComputeConfig()
    """GPUs, memory, node selector and tolerations of the model steps on Kubernetes or Celery (the `compute.…` keys)"""

    @property
    def training_processes(self) -> int:
        """`model.nproc`, else one training process per GPU of the step (`compute.gpus`), at least one."""
        return self.model.nproc or max(1, self.compute.gpus)


def parse_spec(raw: object) -> Spec:
    return data_spec.parse_spec(raw, Spec)  # type: ignore[return-value]


def load_spec(path: str | os.PathLike[str] | None = None) -> Spec:
    """The spec at `path`, else `$GEOSOLVER_SPEC`, else the bundled demo; every section validated."""
    return data_spec.load_spec(path, Spec)  # type: ignore[return-value]
