import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from geosolver_data.model_spec import ModelConfig
from geosolver_model.evaluation.evaluate import retrieval_predictor, run_predictor
from geosolver_model.evaluation.metrics import geo_metrics
from geosolver_model.evaluation.test_sets import dataset_test_split
from geosolver_model.net.images import Processing
from geosolver_model.net.model import GeoRetriever
from geosolver_model.retrieval.gallery import build_gallery
from geosolver_model.train.loop import build_model, train, train_step
from geosolver_model.train.shard_stream import ShardStream, loader, row_groups
from tests.model.conftest import with_model

PROC = Processing.for_size(64)
SMALL = ModelConfig(base="tiny-64", steps=6, batch_size=8, warmup_steps=2, queue_size=16, checkpoint_every=3,
                    lr=5e-4, head_lr=2e-3, embed_dim=64, loc_features=64, loc_hidden=128)


def _states_equal(a: GeoRetriever, b: GeoRetriever) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("workers", [0, 2])
def test_checkpoint_and_resume_equal_an_uninterrupted_run(learn_dataset, tmp_path: Path, workers: int) -> None:
    _, _, version_dir = learn_dataset
    spec = SMALL.model_copy(update={"num_workers": workers})  # 2: the loader restarts at worker 0 on resume
    straight = train(spec, version_dir, "soft_haversine", tmp_path / "a", log=lambda _: None)
    train(spec, version_dir, "soft_haversine", tmp_path / "b", log=lambda _: None, stop_after=4)  # "crash" at 4
    assert (tmp_path / "b" / "checkpoints" / "step-0000003").exists()  # last checkpoint before the crash
    logs: list[str] = []
    resumed = train(spec, version_dir, "soft_haversine", tmp_path / "b", log=logs.append)
    assert any("resumed from step-0000003" in line for line in logs)
    assert _states_equal(straight.model, resumed.model)
    assert [c["loss"] for c in straight.curve] == [c["loss"] for c in resumed.curve]


def test_stream_resumes_at_the_same_batch_and_ranks_are_disjoint(learn_dataset) -> None:
    _, _, version_dir = learn_dataset
    fresh = iter(ShardStream(version_dir, PROC, 8, seed=1))
    batches = [next(fresh) for _ in range(5)]
    later = next(iter(ShardStream(version_dir, PROC, 8, seed=1, start_batch=3)))
    assert torch.equal(later["pixels"], batches[3]["pixels"]) and torch.equal(later["latlon"], batches[3]["latlon"])
    # Each epoch, every rank reads the same number of rows (a short share repeats a few), and together the
    # ranks read the whole train split: ranks change epoch at the same step.
    ranks = [ShardStream(version_dir, Processing.for_size(16), 1, seed=1, rank=r, world_size=2, train=False)
             for r in (0, 1)]
    train_rows = sum(u.rows for u in row_groups(version_dir, "train"))
    iters = [iter(stream) for stream in ranks]
    for epoch in range(2):
        length = ranks[0].epoch_rows(epoch)
        assert ranks[1].epoch_rows(epoch) == length and 2 * length - train_rows <= 32  # padding < a row group
        seen = [[tuple(next(it)["latlon"][0].tolist()) for _ in range(length)] for it in iters]
        assert set(seen[0]) | set(seen[1]) == _all_train_locations(version_dir)
        assert not set(seen[0]) & set(seen[1])  # disjoint shares


def _all_train_locations(version_dir: Path) -> set[tuple[float, float]]:
    import pyarrow.parquet as pq

    units = row_groups(version_dir, "train")
    rows = [pq.ParquetFile(u.path).read_row_group(u.row_group, columns=["lat", "lon"]) for u in units]
    return {(float(torch.tensor(la, dtype=torch.float32)), float(torch.tensor(lo, dtype=torch.float32)))
            for t in rows for la, lo in zip(t.column("lat").to_pylist(), t.column("lon").to_pylist(), strict=True)}


def test_resume_with_two_loader_workers_continues_at_the_same_batch(learn_dataset) -> None:
    """DataLoader takes batches round-robin from worker 0: a resumed run must not restart at worker 0's."""
    _, _, version_dir = learn_dataset
    proc = Processing.for_size(16)
    straight = iter(loader(ShardStream(version_dir, proc, 4, seed=2, train=False), num_workers=2))
    expected = [next(straight)["latlon"] for _ in range(9)]
    for start in (3, 4):
        resumed = iter(loader(ShardStream(version_dir, proc, 4, seed=2, start_batch=start, train=False), 2))
        got = [next(resumed)["latlon"] for _ in range(9 - start)]
        assert all(torch.equal(a, b) for a, b in zip(got, expected[start:], strict=True)), start


def test_learning_is_real(learn_dataset, tmp_path: Path) -> None:
    spec, _, version_dir = learn_dataset
    gallery = build_gallery(version_dir, spec.model.gallery_resolution)
    test = dataset_test_split(version_dir)
    assert test.size >= 40

    def median_km(model: GeoRetriever) -> float:
        return geo_metrics(run_predictor(retrieval_predictor(model, gallery), test), test.latlon)["median_km"]

    before = median_km(build_model(spec.model))
    # 120 steps: median error ~1,100 km from ~7,300 untrained (250 steps: ~780), in half the time.
    trained = train(with_model(spec, steps=120).model, version_dir, "soft_haversine", tmp_path,
                    log=lambda _: None).model
    after = median_km(trained)
    assert after < before / 3, (before, after)
    assert after < 2000, after


# --- DDP: 2 CPU processes (gloo) must take the same steps as one process on the whole batch ---

def _batches(steps: int, size: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    def latlon() -> torch.Tensor:
        return torch.stack([torch.rand(size, generator=g) * 140 - 60, torch.rand(size, generator=g) * 360 - 180], 1)

    return [{"pixels": torch.randn(size, 3, 64, 64, generator=g), "latlon": latlon()} for _ in range(steps)]


def _run_steps(model: GeoRetriever, ddp_model: torch.nn.Module, batches: list[dict], spec: ModelConfig) -> None:
    # Plain SGD: what DDP changes is the gradient. (Adam would turn the float noise of gradients that are
    # zero in exact arithmetic, such as attention key biases, into full-size steps of random sign.)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for batch in batches:
        train_step(model, ddp_model, batch, "soft_haversine", spec, torch.device("cpu"))
        optimizer.step()
        optimizer.zero_grad()


def _ddp_worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    model = build_model(SMALL)
    model.freeze_vision_except_last(SMALL.unfreeze_last_blocks)
    half = [{k: v[rank * 4:(rank + 1) * 4] for k, v in b.items()} for b in _batches(3, 8)]
    _run_steps(model, torch.nn.parallel.DistributedDataParallel(model), half, SMALL)
    if rank == 0:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_on_two_processes_matches_one_process(tmp_path: Path) -> None:
    out = tmp_path / "ddp.safetensors"
    mp.spawn(_ddp_worker, args=(_free_port(), str(out)), nprocs=2, join=True)
    single = build_model(SMALL)
    single.freeze_vision_except_last(SMALL.unfreeze_last_blocks)
    _run_steps(single, single, _batches(3, 8), SMALL)
    ddp_state, single_state = load_file(out), single.state_dict()
    moved = 0
    for key, value in single_state.items():
        assert torch.allclose(ddp_state[key], value, atol=1e-5, rtol=1e-4), key
        moved += int(not torch.equal(value, build_model(SMALL).state_dict()[key]))
    assert moved > 10  # the comparison covers weights that actually trained



def test_training_can_be_watched_in_tensorboard_and_the_log(learn_dataset, tmp_path: Path) -> None:
    """Event files per run (loss, learning rate, throughput; validation figures at each validation step),
    kept with the saved model; a resumed run continues the same curves; the log line carries an ETA."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from geosolver_model.evaluation.validation import validator
    from geosolver_model.train.loop import save_final

    _, _, version_dir = learn_dataset
    spec = SMALL.model_copy(update={"steps": 10, "val_every": 5, "eval_max_images": 16})
    logs: list[str] = []
    train(spec, version_dir, "infonce", tmp_path, log=logs.append, stop_after=4,
          validate=validator(spec, version_dir))  # a crash at step 4, then the rest
    result = train(spec, version_dir, "infonce", tmp_path, log=logs.append, validate=validator(spec, version_dir))
    stats = save_final(result, tmp_path / "final")
    assert any("steps/s" in line and "ETA " in line and "step 10/10" in line for line in logs)
    assert any("validation median" in line for line in logs)
    events = EventAccumulator(str(tmp_path / "final" / "runs")).Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(1, 11))  # both runs' steps, once each
    assert [round(e.value, 4) for e in losses] == [round(c["loss"], 4) for c in result.curve]
    assert {"train/learning_rate", "validation/median_km", "validation/acc_25km"} <= set(events.Tags()["scalars"])
    validated = [c for c in stats["curve"] if "val_median_km" in c]
    assert [e.value for e in events.Scalars("validation/median_km")] == pytest.approx(
        [c["val_median_km"] for c in validated], abs=0.01)
