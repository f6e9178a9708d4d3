"""The training loop, nanoGPT-style: config at the top, one flat loop, named helpers, exact resume.

Checkpoints (every `checkpoint_every` steps) hold the model (safetensors), optimizer and scheduler
(plain tensors, loaded with weights_only=True), and the step; the data position is a function of
the step. A run killed at any point and started again continues as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel

from geosolver_data.model_spec import ModelConfig
from geosolver_data.spec import ImageSpec
from geosolver_model.net import device as devices
from geosolver_model.net.model import GeoConfig, GeoRetriever
from geosolver_model.train import distributed as D
from geosolver_model.train.losses import contrastive_loss
from geosolver_model.train.shard_stream import ShardStream, dataset_image_spec, loader
from geosolver_model.train.watch import EVENTS, PUBLISHED_EVENTS, TrainingWatch

Log = Callable[[str], None]
# The validation figures of the model in training (evaluation/metrics.py's distance_metrics: median_km,
# acc_<t>km, geoguessr_score), or None when there is nothing to validate on. Under DDP every rank calls it
# at the same step (evaluation/validation.py shards the split over the ranks).
Validate = Callable[[GeoRetriever], dict[str, float | None] | None]


@dataclass
class TrainResult:
    model: GeoRetriever
    curve: list[dict] = field(default_factory=list)
    samples_per_s: float = 0.0


def build_model(spec: ModelConfig, ingest: ImageSpec | None = None) -> GeoRetriever:
    """The base vision tower with a fresh head and location encoder, sized by the config (GeoCLIP's
    weights in them with `location_init: geoclip`); `ingest` is how the training data stored its
    images (raw photos are resized the same way)."""
    model = GeoRetriever.from_base(spec.base, GeoConfig.of(spec), ingest, spec.revision)
    if spec.location_init == "geoclip":
        from geosolver_model.net.geoclip import warm_start

        warm_start(model)
    return model


def get_lr_factor(step: int, spec: ModelConfig) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def decays(name: str, p: torch.Tensor) -> bool:
    """Weight decay on weight matrices only: never on biases, LayerNorm gains (1-D) or the temperature."""
    return p.ndim >= 2 and name != "logit_scale"


def make_optimizer(model: GeoRetriever, spec: ModelConfig) -> torch.optim.AdamW:
    """Two learning rates (vision blocks, the rest) x decay or not: up to four parameter groups."""
    groups = []
    for part, lr in (("head", spec.head_lr), ("vision", spec.lr)):
        named = [(n, p) for n, p in model.named_parameters()
                 if p.requires_grad and n.startswith("vision.") == (part == "vision")]
        for decay in (True, False):
            params = [p for n, p in named if decays(n, p) == decay]
            if params:
                groups.append({"params": params, "lr": lr, "weight_decay": spec.weight_decay if decay else 0.0})
    return torch.optim.AdamW(groups)


def latest_checkpoint(folder: Path) -> Path | None:
    done = sorted(folder.glob("step-*[0-9]"))
    return done[-1] if done else None


def save_checkpoint(folder: Path, step: int, model: GeoRetriever, optimizer, scheduler, curve: list[dict]) -> None:
    """Write to a temporary folder, then rename: a kill mid-write leaves the previous checkpoint."""
    final = folder / f"step-{step:07d}"
    tmp = folder / f".tmp-step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "curve": curve}))
    tmp.rename(final)
    for old in sorted(folder.glob("step-*[0-9]"))[:-2]:  # keep the last two
        shutil.rmtree(old)


def load_checkpoint(path: Path, model: GeoRetriever, optimizer, scheduler) -> tuple[int, list[dict]]:
    model.load_state_dict(load_file(path / "model.safetensors"))
    state = torch.load(path / "optim.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    meta = json.loads((path / "state.json").read_text())
    return meta["step"], meta["curve"]


def train_step(model: GeoRetriever, ddp_model: torch.nn.Module, batch: dict, objective: str, spec: ModelConfig,
               dev: torch.device) -> torch.Tensor:
    """One micro-batch: embed, gather across ranks, loss, backward. Returns the loss (detached)."""
    pixels, latlon = batch["pixels"].to(dev), batch["latlon"].to(dev)
    queue = model.queued_gps()
    gps_in = latlon if queue is None else torch.cat([latlon, queue])
    with devices.autocast(dev, spec.precision):  # bf16 on a GPU; the location encoder stays fp32 inside
        img, gps = ddp_model(pixels, gps_in)
    img, gps = img.float(), gps.float()
    batch_gps, queue_emb = gps[: len(latlon)], (gps[len(latlon):] if queue is not None else None)
    all_img, all_gps, all_latlon = D.gather(img), D.gather(batch_gps), D.gather(latlon)
    loss = contrastive_loss(all_img, all_gps, queue_emb, model.logit_scale, all_latlon, queue, objective,
                            spec.soft_target_km, spec.same_place_km)
    (loss / spec.grad_accum).backward()
    model.enqueue(all_latlon.detach())
    return loss.detach()


def train(spec: ModelConfig, version_dir: Path, objective: str, run_dir: Path, log: Log = print,
          stop_after: int | None = None, validate: Validate | None = None) -> TrainResult:
    """Fine-tune for `spec.steps` steps (resuming from run_dir/checkpoints), or stop early at
    `stop_after` (used to test resume); `validate` runs every `val_every` steps on every rank."""
    dev = devices.resolve(spec.device)
    model = build_model(spec, dataset_image_spec(version_dir))
    model.precision = spec.precision
    model.freeze_vision_except_last(spec.unfreeze_last_blocks)
    model.to(dev)
    optimizer = make_optimizer(model, spec)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: get_lr_factor(s, spec))
    ckpt_dir = run_dir / "checkpoints"
    step, curve = 0, []
    if (last := latest_checkpoint(ckpt_dir)) is not None:
        step, curve = load_checkpoint(last, model, optimizer, scheduler)
        log(f"{objective}: resumed from {last.name}")
    ddp_model = DistributedDataParallel(model) if D.world_size() > 1 else model
    stream = ShardStream(version_dir, model.processing, spec.batch_size, spec.seed, D.rank(), D.world_size(),
                         start_batch=step * spec.grad_accum)
    batches = iter(loader(stream, spec.num_workers))
    started, seen = time.perf_counter(), 0
    watch = TrainingWatch(run_dir, objective, spec.steps, step, log, writes=D.rank() == 0)
    while step < spec.steps and (stop_after is None or step < stop_after):
        model.train()
        for _ in range(spec.grad_accum):
            loss = train_step(model, ddp_model, next(batches), objective, spec, dev)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # CLIP's cap on the temperature
        step += 1
        seen += spec.batch_size * spec.grad_accum * D.world_size()
        rate = seen / (time.perf_counter() - started)
        curve.append({"step": step, "loss": round(float(loss), 5), "lr": scheduler.get_last_lr()[0]})
        watch.step(step, float(loss), curve[-1]["lr"], rate)
        if validate is not None and spec.val_every and (step % spec.val_every == 0 or step == spec.steps):
            figures = validate(model)  # every rank: each scores its share of the split
            curve[-1]["val_median_km"] = figures["median_km"] if figures else None
            curve[-1] |= {f"val_{k}": v for k, v in (figures or {}).items() if k.startswith("acc_")}
            watch.validated(step, figures or {})
            model.train()
        if D.rank() == 0 and (step % spec.checkpoint_every == 0 or step == spec.steps):
            save_checkpoint(ckpt_dir, step, model, optimizer, scheduler, curve)
    watch.close()
    return TrainResult(model=model.eval(), curve=curve,
                       samples_per_s=seen / max(1e-9, time.perf_counter() - started))


def save_final(result: TrainResult, final: Path) -> dict:
    """Save the trained model and its training figures (curve thinned to ~200 points)."""
    stats = {"samples_per_s": round(result.samples_per_s, 1),
             "final_loss": result.curve[-1]["loss"] if result.curve else None,
             "curve": [c for i, c in enumerate(result.curve)
                       if i % max(1, len(result.curve) // 200) == 0 or "val_median_km" in c]}
    shutil.rmtree(final, ignore_errors=True)
    result.model.save(final)
    (final / "train.json").write_text(json.dumps(stats))
    if (final.parent / EVENTS).is_dir():  # the TensorBoard curves, kept with the model
        shutil.copytree(final.parent / EVENTS, final / PUBLISHED_EVENTS)
    return stats
