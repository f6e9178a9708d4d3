"""The model stages as a real run takes them, on the machine's GPU: train -> validate -> evaluate -> embed
-> index, through the same stage functions the Dagster assets call, on `model.device: auto`, with a
StreetCLIP-sized CLIP (ViT-L/14 at 336 px, random weights: nothing is downloaded) over the demo dataset.
Beside it, in the same run, the bare transformers tower's bf16 forward and forward+backward rates
(bench_model), so each stage's throughput reads as a share of what the tower alone allows.

    python -m bench.bench_gpu_path [--steps 30] [--tiny]

--tiny swaps in the demo's tiny CLIP, for a quick run of the same path on a CPU. Prints JSON lines: the
device, each stage's wall seconds and its images (or samples) per second. Leaves out: the demo dataset's
ingest (timed, but CPU work), model downloads (none), and the Dagster process start-up.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml
from transformers import CLIPConfig, CLIPModel

from bench.bench_model import VIT_L_336, bench, streetclip_sized
from geosolver_data import stages as data_stages
from geosolver_data.model_spec import ModelConfig, parse_spec
from geosolver_data.spec import default_spec_path
from geosolver_data.store.home import Home
from geosolver_model import stages
from geosolver_model.net import device as devices
from geosolver_model.net.clip import tiny_tokenizer
from geosolver_model.net.images import Processing


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def random_streetclip(folder: Path) -> Path:
    """A CLIP folder with StreetCLIP's vision geometry and random weights, a character tokenizer and CLIP's
    336-px processor: what `model.base` points at, loaded through transformers like the real one."""
    text = {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8, "num_hidden_layers": 12,
            "vocab_size": 514, "max_position_embeddings": 77, "bos_token_id": 512, "eos_token_id": 513,
            "pad_token_id": 513}
    vision = {k: v for k, v in VIT_L_336.items() if k != "projection_dim"}
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=768)).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    Processing.for_size(336).save(folder)
    return folder


def timed(label: str, fn, count: int | None = None, **extra: object):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    rate = {"per_s": round(count / seconds, 1)} if count else {}
    emit(stage=label, seconds=round(seconds, 2), **rate, **extra)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tiny", action="store_true", help="the demo's tiny CLIP (a CPU smoke run of the path)")
    parser.add_argument("--home", type=Path, help="where to build (default: a scratch folder)")
    args = parser.parse_args()
    home = Home(args.home or Path(tempfile.mkdtemp(prefix="gpu-path-")))
    dev = devices.resolve("auto")
    emit(bench="machine", device=str(dev), gpu=torch.cuda.get_device_name() if dev.type == "cuda" else None,
         torch=torch.__version__)
    raw = yaml.safe_load(default_spec_path().read_text())
    if args.tiny:
        raw["model"] |= {"steps": args.steps, "batch_size": min(args.batch, 16), "val_every": args.steps}
    else:
        base = random_streetclip(home.root / "random-streetclip")
        raw["model"] = {"base": str(base), "steps": args.steps, "batch_size": args.batch, "val_every": args.steps,
                        "objectives": ["soft_haversine"], "checkpoint_every": args.steps}
    spec = parse_spec(raw)
    dataset = timed("dataset (CPU: ingest, dedup, balance, shards)",
                    lambda: data_stages.build_dataset(spec, home.dataset(spec.name), log=lambda _: None))
    rows = dataset.info.rows
    samples = spec.model.steps * spec.model.batch_size * len(spec.model.objectives)
    model = timed("train + validate (every objective)", lambda: stages.finetune(spec, home, dataset.version,
                                                                                 log=lambda _: None), samples)
    emit(stage="train", samples_per_s={o: r.samples_per_s for o, r in model.info.objectives.items()},
         val_median_km={o: r.curve[-1].get("val_median_km") for o, r in model.info.objectives.items()})
    # image_embeddings and geolocation_eval are siblings in the graph; embedding first times it on its own
    # (the evaluation's locator comparator then reuses the embeddings, as it does after the asset).
    embeddings = timed("embed (every shard row)", lambda: stages.embed(spec, home, model, log=lambda _: None), rows)
    evaluation = timed("evaluate (every comparator on the test split)",
                       lambda: stages.evaluate_model(spec, home, model, log=lambda _: None))
    results = stages.eval_results(evaluation)["dataset_test"]
    emit(stage="evaluate", medians={c: m["median_km"] for c, m in results.items()})
    timed("image index", lambda: stages.image_index(spec, home, model, embeddings))
    timed("gps gallery index", lambda: stages.gps_index(spec, home, model, embeddings))
    if dev.type == "cuda":  # the bare tower, same GPU, same run
        sized = ModelConfig(queue_size=1024)
        bench(streetclip_sized(sized), sized, dev, batch=args.batch, steps=20, label="vit_l14_336_cuda")


if __name__ == "__main__":
    main()
