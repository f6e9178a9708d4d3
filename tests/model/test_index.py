import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from geosolver_data.geo import haversine_km as haversine_np
from geosolver_data.model_spec import IndexConfig
from geosolver_data.store.home import Home
from geosolver_model import stages
from geosolver_model.retrieval import index as ix
from geosolver_model.retrieval.index import build, choose_index, exact_top_k, recall_at_k, search, set_param, tune
from tests.model.conftest import with_model

BIN = Path(sys.executable).parent


def _clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, d)).astype(np.float32)
    x = centres[rng.integers(0, 50, n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_choice_follows_size_and_budget() -> None:
    gib = 2**30
    assert choose_index(10_000, 768, gib).key == "Flat"
    assert choose_index(500_000, 64, gib).key.startswith("HNSW32")
    assert choose_index(1_000_000, 768, gib).key.endswith("SQ8")  # 3 GiB of floats do not fit
    assert "PQ" in choose_index(10_000_000, 768, gib).key  # nor 7 GiB of bytes


def test_tuned_index_reaches_the_recall_target() -> None:
    data = _clustered(20_100, 64)  # queries from the same distribution, held out of the index
    base, queries = data[:20_000], data[20_000:]
    choice = choose_index(len(base), 64, 2 * 2**20)  # 2 MiB: floats (5 MiB) do not fit, 8-bit codes do
    assert "SQ8" in choice.key
    index = build(base, choice)
    truth = exact_top_k(base, queries, 10)
    value, recall = tune(index, choice, queries, truth, 0.95)
    assert recall >= 0.95
    set_param(index, choice, value)
    assert recall_at_k(search(index, queries, 10)[1], truth) == pytest.approx(recall)


@pytest.fixture(scope="module")
def built(learn_dataset):
    spec, root, version_dir = learn_dataset
    home = Home(root)
    quick = with_model(spec, steps=20, objectives=("soft_haversine",))
    model = stages.finetune(quick, home, version_dir.name, log=lambda _: None)
    embeddings = stages.embed(quick, home, model, log=lambda _: None)
    image = stages.image_index(quick, home, model, embeddings)
    gps = stages.gps_index(quick, home, model, embeddings)
    return quick, home, model, embeddings, image, gps


def test_embeddings_cover_every_row_and_are_reused(built) -> None:
    spec, home, model, embeddings, _, _ = built
    manifest = home.datasets("learn").get(model.manifest["dataset"]["version"]).manifest
    assert embeddings.embedded + embeddings.reused == manifest["rows"]
    logs: list[str] = []
    again = stages.embed(spec, home, model, log=logs.append)
    assert again.embedded == 0 and again.reused == manifest["rows"]
    assert not any(line.startswith("embedding:") for line in logs)  # nothing embedded: no progress line
    from geosolver_model.retrieval.embed import embed_dataset
    from geosolver_model.retrieval.published import published_model

    dataset_dir = home.datasets("learn").get(model.manifest["dataset"]["version"]).path
    fresh = embed_dataset(lambda: published_model(spec, home, model), dataset_dir, home.root / "fresh", logs.append)
    assert fresh.embedded == manifest["rows"]
    assert logs[-1].startswith(f"embedding: {manifest['rows']}/{manifest['rows']} images, ")  # with its rate


def test_index_artifacts_are_versioned_and_self_describing(built) -> None:
    spec, home, model, embeddings, image, gps = built
    m = image.manifest
    assert m["kind"] == "image" and m["model_version"] == model.version and m["recall_at_10"] >= 0.95
    assert {"key", "search_param", "search_value", "metric", "dim", "count"} <= set(m["index"])
    assert set(m["files"]) == {"index.faiss", "ids.parquet"} and m["latency_ms"]["p50"] > 0
    assert gps.manifest["kind"] == "gps" and gps.manifest["index"]["count"] > 0
    same = stages.image_index(spec, home, model, embeddings)
    assert same.version == image.version and not same.new
    index, ids, _ = ix.load_index(image.path)
    assert index.ntotal == ids.num_rows == m["index"]["count"]
    assert set(ids.column("split").to_pylist()) <= {"train", "validation"}  # the test split is not indexed


def test_a_new_model_gives_a_new_version_and_keeps_the_old(built) -> None:
    spec, home, _, _, image, _ = built
    other = with_model(spec, steps=21)
    model2 = stages.finetune(other, home, image.manifest["dataset"]["version"], log=lambda _: None)
    emb2 = stages.embed(other, home, model2, log=lambda _: None)
    image2 = stages.image_index(other, home, model2, emb2)
    assert image2.version != image.version and image.path.exists() and image2.path.exists()
    assert home.indexes("image").latest().path == image2.path


def test_corrupted_index_is_detected_before_use(built, tmp_path: Path) -> None:
    _, _, _, _, image, _ = built
    copy = tmp_path / image.version
    shutil.copytree(image.path, copy)
    data = (copy / "index.faiss").read_bytes()
    (copy / "index.faiss").write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    with pytest.raises(ix.IndexUnavailable, match="corrupted"):
        ix.load_index(copy)


def test_predict_command(built, tmp_path: Path) -> None:
    _, home, _, _, image, _ = built
    photo = next((home.root / "synthetic" / "learn" / "synthetic" / "europe").glob("seq_*/000.jpg"))
    env = {"GEOSOLVER_HOME": str(home.root), "PATH": str(BIN)}
    run = subprocess.run([str(BIN / "geosolver"), "predict", str(photo), "--json", "--top-k", "3", "--index",
                          image.version, "--map", str(tmp_path / "map.png")], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert len(out) == 1 and out[0]["image"] == str(photo) and len(out[0]["candidates"]) == 3
    for c in out[0]["candidates"]:
        assert set(c) == {"lat", "lon", "score", "place", "country"}
        assert -90 <= c["lat"] <= 90 and -180 <= c["lon"] <= 180 and c["country"]
    # distinct places: no candidate within locate.min_separation_km (5 km) of a better one
    cands = out[0]["candidates"]
    for i, c in enumerate(cands):
        assert all(haversine_np(c["lat"], c["lon"], d["lat"], d["lon"]) > 5 for d in cands[:i])
    assert out[0]["neighbours"] and all({"image_id", "similarity", "lat", "lon"} <= set(n)
                                        for n in out[0]["neighbours"])
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run([str(BIN / "geosolver"), "predict", str(photo), __file__, "--index", image.version],
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "cannot read image" in bad.stderr and "score" in bad.stdout
    missing = subprocess.run([str(BIN / "geosolver"), "predict", str(photo), "--index", "nope"], env=env,
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    listing = subprocess.run([str(BIN / "geosolver"), "index", "list"], env=env, capture_output=True, text=True)
    assert image.version in listing.stdout


def test_python_geolocates_as_the_command_does_and_the_cards_snippet_runs_as_pasted(built, tmp_path: Path) -> None:
    from geosolver_model import Geolocator
    from geosolver_model.retrieval.index import IndexUnavailable

    _, home, model, _, image, gps = built
    photo = next((home.root / "synthetic" / "learn" / "synthetic" / "europe").glob("seq_*/000.jpg"))
    env = {"GEOSOLVER_HOME": str(home.root), "PATH": str(BIN)}
    with pytest.raises(IndexUnavailable, match="is a gps index, not an image index"):
        Geolocator.from_home(home.root, index=gps.version)
    command = subprocess.run([str(BIN / "geosolver"), "predict", str(photo), "--json", "--index", image.version],
                             env=env, capture_output=True, text=True)
    assert command.returncode == 0, command.stderr
    geo = Geolocator.from_home(home.root, index=image.version)
    assert geo.predict(str(photo)) == json.loads(command.stdout)[0]["candidates"]  # same places, same scores
    with open(photo, "rb") as f:
        assert geo.predict(f.read(), top_k=2) == geo.predict(photo)[:2]  # bytes, a path: one photo loader

    card = (model.path / "finetuned" / "README.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    shutil.copyfile(photo, tmp_path / "photo.jpg")
    pasted = subprocess.run([str(BIN / "python"), "-c", snippet], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert pasted.returncode == 0, pasted.stderr[-2000:]
    printed = [line.split(" ", 2) for line in pasted.stdout.splitlines()]
    expected = Geolocator.from_home(home.root, model=model.version).predict(photo)
    assert [(float(lat), float(lon)) for lat, lon, _ in printed] == [(c["lat"], c["lon"]) for c in expected]
    assert len(printed) == 5  # five distinct places: none within locate.min_separation_km of a better one
    assert all(haversine_np(a["lat"], a["lon"], b["lat"], b["lon"]) > 5 for i, a in enumerate(expected)
               for b in expected[:i])


def test_prune_keeps_the_latest(built, tmp_path: Path) -> None:
    _, home, _, _, _, _ = built
    copy = Home(tmp_path / "home")
    shutil.copytree(home.root / "indexes", copy.root / "indexes")
    before = {a.version for a in ix.all_indexes(copy)}
    latest = {s: copy.indexes(s).latest_version() for s in ix.SERIES}
    removed = ix.prune(copy, keep=0)
    assert {a.version for a in ix.all_indexes(copy)} == set(latest.values())  # only the latest of each series
    assert set(removed) == before - set(latest.values()) and removed  # the older model's versions went
    assert {s: copy.indexes(s).latest_version() for s in ix.SERIES} == latest


def test_the_recall_target_of_the_spec_decides_the_search_effort() -> None:
    data = _clustered(20_100, 64, seed=1)
    base, queries = data[:20_000], data[20_000:]
    choice = choose_index(len(base), 64, 2 * 2**20)
    index, truth = build(base, choice), exact_top_k(base, queries, 10)
    low, high = (tune(index, choice, queries, truth, IndexConfig(recall_target=t).recall_target) for t in (0.5, 0.99))
    assert low[1] >= 0.5 and low[0] < high[0] and high[1] > low[1]  # more recall costs more probes


def test_damaged_weights_and_index_are_refused_and_rebuilt_by_materialising_again(built, tmp_path: Path) -> None:
    """1% of the bytes of the published weights flipped: predict refuses with one line naming the file and
    the remedy (it answered with other figures before); materialising the model again sets the damaged
    version aside and retrains it; a flipped index is rebuilt by materialising the index again."""
    from tests.data.test_publish import _flip

    spec, shared, model, _, image, _ = built
    home = Home(tmp_path / "home")
    shutil.copytree(shared.root, home.root, ignore=shutil.ignore_patterns("training_runs"))
    photo = next((home.root / "synthetic" / "learn" / "synthetic" / "europe").glob("seq_*/000.jpg"))
    env = {"GEOSOLVER_HOME": str(home.root), "PATH": str(BIN)}

    def predict() -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "geosolver"), "predict", str(photo), "--index", image.version], env=env,
                              capture_output=True, text=True, timeout=300)

    assert predict().returncode == 0
    for weights in ("model.safetensors", "geo.safetensors"):
        original = (home.models.path(model.version) / "finetuned" / weights).read_bytes()
        _flip(home.models.path(model.version) / "finetuned" / weights)
        refused = predict()
        assert refused.returncode == 1 and f"finetuned/{weights}: sha256 differs" in refused.stderr, refused.stderr
        assert "materialise finetuned_model again" in refused.stderr and "Traceback" not in refused.stderr
        (home.models.path(model.version) / "finetuned" / weights).write_bytes(original)
    _flip(home.models.path(model.version) / "finetuned" / "geo.safetensors")
    rebuilt = stages.finetune(spec, home, model.manifest["dataset"]["version"], log=lambda _: None)
    assert rebuilt.version == model.version and rebuilt.new and home.models.problems(model.version) == []
    assert list(home.models.root.glob(f".damaged-{model.version}-*"))
    _flip(home.indexes("image").path(image.version) / "index.faiss")
    assert predict().returncode == 1
    again = stages.image_index(spec, home, rebuilt, stages.embed(spec, home, rebuilt, log=lambda _: None))
    assert again.version == image.version and again.new
    assert predict().returncode == 0


def test_top_k_candidates_are_distinct_places() -> None:
    from geosolver_model.retrieval.locate import distinct

    cand = np.array([[48.85, 2.35], [48.8502, 2.3502], [45.76, 4.84], [48.86, 2.36], [43.3, 5.37]])
    order = np.arange(len(cand))  # already best first
    assert distinct(cand, order, 3, 5.0).tolist() == [0, 2, 4]  # 25 m and 1.3 km from Paris: the same place
    assert distinct(cand, order, 3, 0.0).tolist() == [0, 1, 2]  # 0 keeps every candidate
