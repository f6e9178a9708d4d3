"""The paths a GPU run takes, exercised on the CPU: bf16 autocast (what training uses on a GPU), and the
`meta` device standing in for a GPU, where any tensor left on the CPU fails the computation with a device
mismatch before the one intended copy back to the host."""

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from PIL import Image

from geosolver_data.model_spec import ModelConfig
from geosolver_model.evaluation.evaluate import retrieval_predictor
from geosolver_model.evaluation.validation import val_errors_km
from geosolver_model.evaluation.zeroshot import country_names
from geosolver_model.net import device as devices
from geosolver_model.net.location_encoder import LocationEncoder
from geosolver_model.retrieval.embed import embed_images
from geosolver_model.retrieval.gallery import grid_gallery
from geosolver_model.train.loop import build_model, decays, make_optimizer, train_step
from geosolver_model.train.losses import contrastive_loss

SMALL = ModelConfig(base="tiny-64", steps=6, batch_size=8, warmup_steps=2, queue_size=16, embed_dim=64,
                    loc_features=64, loc_hidden=128, precision="bf16")
LA = (34.05, -118.25)


def _north_of(km: float) -> list[float]:
    return [LA[0] + km / 111.32, LA[1]]


def test_geoclip_sized_encoder_tells_places_km_apart_under_bf16_autocast() -> None:
    """GeoCLIP's sizes: at σ=256 the Fourier phase reaches the thousands, which bf16 rounds by more than π."""
    encoder = LocationEncoder(512, 256, 1024, 3, seed=0).eval()
    points = torch.tensor([list(LA), _north_of(5), _north_of(10), _north_of(20)])
    with torch.no_grad():
        fp32 = F.normalize(encoder(points), dim=-1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = F.normalize(encoder(points), dim=-1)
    assert bf16.dtype == torch.float32
    cos = (bf16[0] @ bf16[1:].T).tolist()
    assert cos[0] > cos[1] > cos[2] and cos[2] < 0.99, cos  # 5, 10, 20 km: distinct, and further is less alike
    assert torch.allclose(bf16, fp32, atol=1e-5)  # the same function as evaluation computes


def test_training_step_under_bf16_autocast_embeds_gps_as_evaluation_does() -> None:
    model = build_model(SMALL)
    model.freeze_vision_except_last(SMALL.unfreeze_last_blocks)
    points = torch.tensor([list(LA), _north_of(5), _north_of(20)])
    seen: list[torch.Tensor] = []
    handle = model.location.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    batch = {"pixels": torch.randn(3, 3, 64, 64), "latlon": points}
    model.train()
    loss = train_step(model, model, batch, "infonce", SMALL, torch.device("cpu"))
    handle.remove()
    assert torch.isfinite(loss) and seen[0].dtype == torch.float32
    model.eval()
    with torch.no_grad():
        evaluated = model.encode_gps(points)
    trained = F.normalize(seen[0][:3], dim=-1)
    assert torch.allclose(trained, evaluated, atol=1e-5)
    assert float(trained[0] @ trained[1]) < 0.999  # 5 km apart: two places, not one


def test_a_training_step_runs_on_the_models_device() -> None:
    """On `meta`, a batch left on the CPU would fail with a device mismatch."""
    spec = SMALL.model_copy(update={"queue_size": 0})
    model = build_model(spec).to("meta")
    batch = {"pixels": torch.randn(4, 3, 64, 64), "latlon": torch.tensor([list(LA), _north_of(5), [0.0, 1.0],
                                                                          [-33.9, 151.2]])}
    loss = train_step(model, model, batch, "soft_haversine", spec, torch.device("meta"))
    assert loss.device.type == "meta"


def test_validation_and_embedding_compute_on_the_models_device() -> None:
    """Every step runs on the model's device; only the final copy to the host meets the meta stand-in."""
    model = build_model(SMALL).to("meta")
    images = [Image.new("RGB", (64, 64), (90, 120, 60))] * 2
    predictor = retrieval_predictor(model, grid_gallery(2), 5)
    with pytest.raises(NotImplementedError, match="meta tensor"):
        predictor.run(images)
    with pytest.raises(NotImplementedError, match="meta tensor"):
        embed_images(model, [_jpeg(images[0])])
    # (The zero-shot comparator's text tower calls .item() on its mask, which `meta` cannot stand in for.)


def _jpeg(image: Image.Image) -> bytes:
    import io

    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()


def test_device_settings() -> None:
    assert devices.resolve("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert devices.resolve("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            devices.resolve("cuda")
    assert devices.uses_bf16(torch.device("cuda"), "auto") and not devices.uses_bf16(torch.device("cpu"), "auto")
    assert devices.uses_bf16(torch.device("cpu"), "bf16") and not devices.uses_bf16(torch.device("cuda"), "fp32")
    with pytest.raises(ValueError, match="device"):
        ModelConfig(device="gpu0")


def test_a_copy_of_the_positives_place_in_the_queue_is_not_a_negative() -> None:
    """The same location back in the queue (the photo seen a batch ago) must not push the image away from it."""
    torch.manual_seed(0)
    img = F.normalize(torch.randn(3, 8), dim=1).requires_grad_()
    gps = F.normalize(torch.randn(3, 8), dim=1)
    latlon = torch.tensor([list(LA), [48.85, 2.35], [-33.9, 151.2]])
    queue_emb, queue_gps = F.normalize(torch.randn(2, 8), dim=1), torch.tensor([[10.0, 10.0], [-20.0, 30.0]])
    dup_emb = torch.cat([queue_emb, gps[:1]])  # image 0's own place, 0.3 km off, queued again
    dup_gps = torch.cat([queue_gps, torch.tensor([[LA[0] + 0.003, LA[1]]])])
    scale = torch.tensor(2.0)

    def loss_and_grad(q_emb: torch.Tensor, q_gps: torch.Tensor, objective: str, km: float) -> tuple:
        img.grad = None
        loss = contrastive_loss(img, gps, q_emb, scale, latlon, q_gps, objective, 250.0, km)
        loss.backward()
        return float(loss.detach()), img.grad.clone()

    _, clean_grad = loss_and_grad(queue_emb, queue_gps, "infonce", 1.0)
    _, masked_grad = loss_and_grad(dup_emb, dup_gps, "infonce", 1.0)
    # image 0 is pulled exactly as without the copy (for images 1 and 2 the copy is a fair negative)
    assert torch.allclose(masked_grad[0], clean_grad[0], atol=1e-6)
    assert not torch.allclose(masked_grad[1], clean_grad[1], atol=1e-6)
    # Unmasked (the old objective), the copy is a negative: gradient descent moves image 0 away from its place.
    _, unmasked_grad = loss_and_grad(dup_emb, dup_gps, "infonce", 0.0)
    assert float(-unmasked_grad[0] @ gps[0]) < float(-clean_grad[0] @ gps[0])
    # soft_haversine counts the copy as the positive: exactly the target weight the image's own entry gets.
    from geosolver_model.train.losses import soft_targets

    t = soft_targets(latlon, torch.cat([latlon, dup_gps]), 250.0, 1.0)
    assert float(t[0, 0]) == pytest.approx(float(t[0, -1]))


def test_no_weight_decay_on_biases_norms_and_the_temperature() -> None:
    model = build_model(SMALL)
    model.freeze_vision_except_last(2)
    optimizer = make_optimizer(model, SMALL)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            expected = SMALL.weight_decay if decays(names[id(p)], p) else 0.0
            assert group["weight_decay"] == expected, names[id(p)]
    undecayed = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert "logit_scale" in undecayed and any(n.endswith("layer_norm1.weight") for n in undecayed)
    assert any(n.endswith(".bias") for n in undecayed) and not any(n.endswith("0.weight") for n in undecayed)


def test_zero_shot_prompts_use_common_country_names() -> None:
    names = country_names()
    assert names["KR"] == "South Korea" and names["IR"] == "Iran" and names["RU"] == "Russia"
    assert not [n for n in names.values() if ", " in n]  # no "Korea, Republic of"


# --- validation sharded over DDP ranks: the gathered errors are the single process's ---

def _val_worker(rank: int, port: int, version_dir: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    spec = SMALL.model_copy(update={"precision": "fp32", "gallery": ("train",), "gallery_resolution": 3})
    from geosolver_model.retrieval.gallery import spec_gallery

    km = val_errors_km(build_model(spec), Path(version_dir), spec, spec_gallery(spec, Path(version_dir)))
    if rank == 0:
        np.save(out, km)
    dist.destroy_process_group()


def test_validation_is_sharded_over_ranks_and_gathered(learn_dataset, tmp_path: Path) -> None:
    _, _, version_dir = learn_dataset
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "km.npy"
    mp.spawn(_val_worker, args=(port, str(version_dir), str(out)), nprocs=2, join=True)
    spec = SMALL.model_copy(update={"precision": "fp32", "gallery": ("train",), "gallery_resolution": 3})
    from geosolver_model.retrieval.gallery import spec_gallery

    single = val_errors_km(build_model(spec), version_dir, spec, spec_gallery(spec, version_dir))
    gathered = np.load(out)
    assert len(gathered) == len(single) > 10
    assert np.allclose(np.sort(gathered), np.sort(single), atol=1e-3)
