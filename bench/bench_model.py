"""Model benchmarks (issue: fine-tune StreetCLIP). Prints one JSON line per figure.

Side by side in one run: our image embedding and training step against the bare transformers
vision tower doing the same forward (and backward) pass, so the overhead of the image head,
location encoder, queue and loss shows as a ratio.
  * CPU, tiny model (64 px): embedding images/s, training samples/s;
  * CUDA when available, StreetCLIP-sized (ViT-L/14 at 336 px, random weights): bf16 embedding
    images/s, bf16 training samples/s (last 2 blocks unfrozen, as the default spec), peak memory.

Run from the repo root: .venv/bin/python -m bench.bench_model [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from geosolver_data.model_spec import ModelConfig
from geosolver_model.net.images import Processing
from geosolver_model.net.model import GeoConfig, GeoRetriever
from geosolver_model.train.loop import build_model, make_optimizer, train_step

VIT_L_336 = {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24,
             "image_size": 336, "patch_size": 14, "projection_dim": 768}


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def rate(fn: Callable[[], None], items: int, steps: int, dev: torch.device) -> float:
    fn()  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return items * steps / (time.perf_counter() - start)


def streetclip_sized(spec: ModelConfig) -> GeoRetriever:
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**VIT_L_336))
    return GeoRetriever(vision, GeoConfig.of(spec), Processing.for_size(VIT_L_336["image_size"]))


def bench(model: GeoRetriever, spec: ModelConfig, dev: torch.device, batch: int, steps: int, label: str) -> None:
    model.freeze_vision_except_last(spec.unfreeze_last_blocks)
    model.to(dev)
    size = model.image_size
    pixels = torch.randn(batch, 3, size, size, device=dev)
    latlon = torch.stack([torch.rand(batch) * 140 - 60, torch.rand(batch) * 360 - 180], 1).to(dev)
    amp = {"device_type": dev.type, "dtype": torch.bfloat16, "enabled": dev.type == "cuda"}

    @torch.no_grad()
    def ours_embed() -> None:
        with torch.autocast(**amp):
            model.encode_images(pixels)

    @torch.no_grad()
    def bare_embed() -> None:
        with torch.autocast(**amp):
            model.vision(pixel_values=pixels)

    optimizer = make_optimizer(model, spec)

    def ours_train() -> None:
        train_step(model, model, {"pixels": pixels, "latlon": latlon}, "soft_haversine", spec, dev)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def bare_train() -> None:
        with torch.autocast(**amp):
            out = model.vision(pixel_values=pixels).image_embeds
        out.float().square().mean().backward()
        optimizer.zero_grad(set_to_none=True)

    model.eval()
    emb, bare_emb = rate(ours_embed, batch, steps, dev), rate(bare_embed, batch, steps, dev)
    model.train()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tr, bare_tr = rate(ours_train, batch, steps, dev), rate(bare_train, batch, steps, dev)
    extra = {"peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)} if dev.type == "cuda" else {}
    emit(bench=f"embed_{label}", device=str(dev), batch=batch, images_per_s=round(emb, 1),
         bare_vision_images_per_s=round(bare_emb, 1), ratio_to_bare=round(emb / bare_emb, 3))
    emit(bench=f"train_{label}", device=str(dev), batch=batch, samples_per_s=round(tr, 1),
         bare_vision_samples_per_s=round(bare_tr, 1), ratio_to_bare=round(tr / bare_tr, 3), **extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    spec = ModelConfig(base="tiny", queue_size=1024, embed_dim=64, loc_features=64, loc_hidden=128)
    streetclip = ModelConfig(queue_size=1024)  # GeoCLIP's encoder sizes, as a real run has them
    emit(bench="machine", cpu_threads=torch.get_num_threads(), cuda=torch.cuda.is_available(),
         gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None, torch=torch.__version__)
    bench(build_model(spec), spec, torch.device("cpu"), batch=64, steps=args.steps, label="tiny_cpu")
    if torch.cuda.is_available():
        bench(streetclip_sized(streetclip), streetclip, torch.device("cuda"), batch=64, steps=args.steps,
              label="vit_l14_336_cuda")
    else:
        emit(bench="embed_vit_l14_336_cuda", skipped="no CUDA device on this machine")


if __name__ == "__main__":
    main()
