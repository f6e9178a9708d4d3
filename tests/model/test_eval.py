import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from geosolver_data.gazetteer import load_gazetteer
from geosolver_data.ingest.sources.scene import render_scene
from geosolver_data.model_spec import load_spec
from geosolver_data.spec import ImageSpec
from geosolver_data.store.home import Home
from geosolver_model import stages
from geosolver_model.evaluation.metrics import geo_metrics, geoguessr_score
from geosolver_model.evaluation.test_sets import im2gps_style, osv5m, public_benchmarks
from geosolver_model.evaluation.zeroshot import ZeroShot
from geosolver_model.net.clip import BaseModelUnavailable, load_clip, load_vision
from geosolver_model.net.model import GeoRetriever
from geosolver_model.retrieval.gallery import build_gallery, predict
from geosolver_model.train.loop import build_model
from tests.model.conftest import LEARN_SPEC, TINY, with_model

EVAL_KEYS = {"n", "acc_1km", "acc_25km", "acc_200km", "acc_750km", "acc_2500km", "median_km", "geoguessr_score",
             "country_acc"}


def test_metrics_by_hand() -> None:
    true = np.array([[48.8566, 2.3522], [40.7128, -74.006], [0.5, 0.5]])
    pred = np.array([[48.8566, 2.3522], [40.7128, -74.006 + 0.1], [10.5, 0.5]])  # 0 km, ~8.4 km, ~1112 km
    m = geo_metrics(pred, true, np.array(["FR", "US", "GA"]))
    assert set(m) == EVAL_KEYS
    assert m["acc_1km"] == pytest.approx(1 / 3, abs=1e-4) and m["acc_25km"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["acc_2500km"] == 1.0 and m["median_km"] == pytest.approx(8.43, abs=0.05)
    assert m["country_acc"] == pytest.approx(2 / 3, abs=1e-4)
    assert geoguessr_score(np.array([0.0]))[0] == 5000
    assert geoguessr_score(np.array([1492.7]))[0] == pytest.approx(5000 / np.e)


def test_predict_returns_sorted_refined_coordinates() -> None:
    model = build_model(TINY)
    gallery = torch.tensor([[48.85, 2.35], [40.71, -74.0], [-33.87, 151.2], [35.68, 139.65]])
    emb = model.encode_gps(gallery)
    pixels = torch.randn(3, 3, model.image_size, model.image_size)
    plain = predict(model, pixels, gallery, emb, top_k=3, refine_guesses=False)
    refined = predict(model, pixels, gallery, emb, top_k=3, refine_guesses=True)
    assert refined.latlon.shape == (3, 3, 2)
    assert torch.all(refined.score[:, :-1] >= refined.score[:, 1:])
    assert torch.all(refined.score[:, 0] >= plain.score[:, 0] - 1e-6)  # refining never lowers the best score
    assert torch.all(refined.latlon[..., 0].abs() <= 90) and torch.all(refined.latlon[..., 1].abs() <= 180)


def test_zero_shot_guesses_are_gazetteer_places() -> None:
    zs = ZeroShot(*load_clip("tiny"))
    guesses = zs.predict(torch.randn(2, 3, zs.processing.crop, zs.processing.crop))
    gaz = load_gazetteer()
    for lat, lon in guesses:
        assert np.any((gaz.lat == lat) & (gaz.lon == lon))


def test_unreachable_base_model_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(BaseModelUnavailable, match=r"model\.base"):
        load_vision(str(tmp_path / "no-such-model"))


def test_benchmark_loaders(tmp_path: Path) -> None:
    folder = tmp_path / "benchmarks" / "im2gps3k"
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (120, 90), (200, 10, 10)).save(folder / "images" / "a.jpg")
    (folder / "im2gps3k_places365.csv").write_text("IMG_ID,LAT,LON\na.jpg,48.85,2.35\nmissing.jpg,1,1\n"
                                                    "a.jpg,north,2\na.jpg,95.0,2\n")  # no number, off the globe
    osv = tmp_path / "benchmarks" / "osv5m"
    (osv / "images").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(osv / "images" / "123.jpg")
    (osv / "test.csv").write_text("id,latitude,longitude,country\n123,-33.9,151.2,AU\n")
    found = {t.name: t for t in public_benchmarks(tmp_path / "benchmarks")}
    assert set(found) == {"im2gps3k", "osv5m_test"}
    assert found["im2gps3k"].size == 1 and found["im2gps3k"].latlon.tolist() == [[48.85, 2.35]]
    assert found["im2gps3k"].listed == 4 and found["im2gps3k"].not_scored == {
        "missing": ["missing.jpg"], "invalid_coordinates": ["a.jpg", "a.jpg"]}  # every listed row accounted for
    assert next(found["im2gps3k"].images(ImageSpec())).size == (120, 90)  # never upscaled
    assert im2gps_style(folder, "x").size == 1 and osv5m(osv).latlon.tolist() == [[-33.9, 151.2]]


def test_model_save_load_round_trip(tmp_path: Path) -> None:
    model = build_model(TINY)
    model.enqueue(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    model.save(tmp_path / "m")
    assert not list((tmp_path / "m").rglob("*.bin")) and list((tmp_path / "m").rglob("*.safetensors"))
    loaded = GeoRetriever.from_pretrained(tmp_path / "m")
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    (tmp_path / "m" / "geo_config.json").write_text(json.dumps({**loaded.config.__dict__, "embed_dim": 16}))
    with pytest.raises(RuntimeError):
        GeoRetriever.from_pretrained(tmp_path / "m")  # weights that do not fit the config are refused


@pytest.fixture(scope="module")
def finetuned(learn_dataset):
    spec, root, version_dir = learn_dataset
    home = Home(root)
    quick = with_model(spec, steps=30, checkpoint_every=10)
    return quick, home, stages.finetune(quick, home, version_dir.name, log=lambda _: None)


def test_finetune_publishes_a_versioned_model(finetuned) -> None:
    spec, home, model = finetuned
    m = model.manifest
    assert model.path == home.root / "models" / model.version
    assert (model.path / "finetuned" / "geo.safetensors").exists()
    assert set(m["objectives"]) == {"soft_haversine", "infonce"} and m["published_objective"] == "soft_haversine"
    assert m["dataset"]["name"] == "learn" and m["base"] == "tiny-64" and len(m["objectives"]["infonce"]["curve"]) == 30
    again = stages.finetune(spec, home, m["dataset"]["version"], log=lambda _: None)
    assert again.version == model.version and not again.new  # same inputs: same version, no retraining
    assert (home.root / "models" / "LATEST").read_text().strip() == model.version


def test_evaluate_writes_eval_json_with_every_comparator(finetuned) -> None:
    spec, home, model = finetuned
    before = sorted(p.relative_to(model.path) for p in model.path.rglob("*"))
    evaluation = stages.evaluate_model(spec, home, model, log=lambda _: None)
    assert evaluation.path.parent == home.root / "evals" and evaluation.manifest["model_version"] == model.version
    assert sorted(p.relative_to(model.path) for p in model.path.rglob("*")) == before  # the model is untouched
    results = stages.eval_results(evaluation)
    on_disk = json.loads((evaluation.path / "eval.json").read_text())
    assert on_disk["dataset_test"] == results["dataset_test"]
    assert set(on_disk["dataset_test"]) == {"untrained", "zeroshot_streetclip", "finetuned", "soft_haversine",
                                            "infonce", "locator"}
    # the published folder holds the first objective's weights: scored once, reported under both names
    assert on_disk["dataset_test"]["finetuned"] == on_disk["dataset_test"]["soft_haversine"]
    assert all(set(m) == EVAL_KEYS for m in on_disk["dataset_test"].values())
    assert (evaluation.path / "errors.png").read_bytes()[:4] == b"\x89PNG" and "| finetuned |" in (
        evaluation.path / "eval.md").read_text()
    # Every comparator's guess for every test image, agreeing with the summary it was computed from.
    guesses = pq.read_table(evaluation.path / stages.PREDICTIONS)
    for name, metrics in on_disk["dataset_test"].items():
        mine = guesses.filter(pc.equal(guesses.column("comparator"), name))
        assert mine.num_rows == metrics["n"]
        assert np.median(mine.column("error_km").to_numpy()) == pytest.approx(metrics["median_km"], abs=0.01)
        assert np.mean(mine.column("points").to_numpy()) == pytest.approx(metrics["geoguessr_score"], abs=0.1)
    again = stages.evaluate_model(spec, home, model, log=lambda _: None)
    assert again.version == evaluation.version and not again.new  # same model and test sets: not run again
    assert stages.winner(results, spec.model.objectives) in spec.model.objectives


def test_torchrun_with_two_cpu_processes(learn_dataset) -> None:
    spec, root, version_dir = learn_dataset
    home = Home(root)
    ddp = with_model(spec, steps=4, nproc=2, batch_size=8, objectives=("infonce",), checkpoint_every=2, val_every=2)
    model = stages.finetune(ddp, home, version_dir.name, log=lambda _: None)
    curve = model.manifest["objectives"]["infonce"]["curve"]
    assert curve[-1]["step"] == 4
    # both ranks validated their half of the split and the median is over all of it
    assert [c["step"] for c in curve if c.get("val_median_km")] == [2, 4]
    loaded = GeoRetriever.from_pretrained(model.path / "finetuned")
    gallery = torch.as_tensor(build_gallery(version_dir, 3))
    assert loaded.encode_gps(gallery).shape[0] == len(gallery)


def test_regressions_compare_with_the_previous_model() -> None:
    current = {"dataset_test": {"finetuned": {"median_km": 500.0}},
               "history": [{"model": "a", "median_km": 300.0}, {"model": "b", "median_km": 480.0}]}
    assert stages.regressions(current, 0.10) == []  # 500 is within 10% of the previous, 480
    current["history"].append({"model": "c", "median_km": 400.0})
    assert "model c" in stages.regressions(current, 0.10)[0]
    assert stages.regressions({"dataset_test": {"finetuned": {"median_km": 1.0}}, "history": []}, 0.1) == []


def test_only_training_code_decides_the_model_version(tmp_path: Path) -> None:
    package = Path(stages.__file__).parent
    copy = tmp_path / "geosolver_model"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    original = stages.code_version(package)
    assert stages.code_version(copy) == original
    for name in ("cli.py", "names.py", "stages.py", "retrieval/locate.py", "retrieval/index.py",
                 "retrieval/embed.py", "retrieval/gallery.py", "evaluation/evaluate.py", "play/server.py"):
        (copy / name).write_text((copy / name).read_text() + "\n# a typo fixed\n")
    assert stages.code_version(copy) == original  # nothing retrains, nothing is re-embedded
    for name in ("train/loop.py", "net/images.py", "net/geoclip.py"):
        changed = copy / name
        before = changed.read_text()
        changed.write_text(before + "\n# a training change\n")
        assert stages.code_version(copy) != original, name
        changed.write_text(before)
    (copy / "train" / "schedule.py").write_text("WARMUP = 10\n")  # a new file, listed nowhere
    assert stages.code_version(copy) != original
    used_only = with_model(load_spec(LEARN_SPEC), top_k=3, eval_max_images=10, gallery_resolution=4)
    assert stages.model_version(used_only, "v1") == stages.model_version(load_spec(LEARN_SPEC), "v1")
    assert stages.model_version(with_model(load_spec(LEARN_SPEC), lr=1e-4), "v1") != stages.model_version(
        load_spec(LEARN_SPEC), "v1")


def _fabricate_public_sets(root: Path) -> dict[str, list[tuple[str, float, float]]]:
    """Im2GPS3k, YFCC4k and OSV-5M test sets in their real layouts, a few street-like photos each."""
    places = [(48.85, 2.35, "FR"), (40.71, -74.0, "US"), (35.68, 139.69, "JP"), (-33.87, 151.21, "AU")]
    written: dict[str, list[tuple[str, float, float]]] = {}
    for name in ("im2gps3k", "yfcc4k", "osv5m"):
        images = root / name / "images"
        images.mkdir(parents=True)
        rows = []
        for i, (lat, lon, country) in enumerate(places):
            key = f"{name}_{i}" if name != "osv5m" else str(900_000 + i)
            photo = render_scene(lat, lon, country, 1_000_000, np.random.default_rng(i)).resize((1024, 768))
            out = io.BytesIO()
            photo.save(out, "JPEG", quality=90)
            if name == "osv5m":  # as the Hub ships it: images/test/00.zip, 01.zip, two photos each
                (images / "test").mkdir(exist_ok=True)
                with zipfile.ZipFile(images / "test" / f"0{i // 2}.zip", "a") as archive:
                    archive.writestr(f"{key}.jpg", out.getvalue())
            else:
                (images / f"{key}.jpg").write_bytes(out.getvalue())
            rows.append((key, lat, lon))
        if name == "osv5m":
            lines = ["id,latitude,longitude,country"] + [f"{k},{a},{o},XX" for k, a, o in rows]
            (root / name / "test.csv").write_text("\n".join(lines) + "\n")
        else:
            lines = ["IMG_ID,LAT,LON"] + [f"{k}.jpg,{a},{o}" for k, a, o in rows]
            if name == "im2gps3k":  # real folders are messy: a listed photo that is absent, one cut short
                (images / "cut.jpg").write_bytes((images / f"{name}_0.jpg").read_bytes()[:3000])
                lines += ["absent.jpg,10.0,10.0", "cut.jpg,20.0,20.0"]
            (root / name / f"{name}_places365.csv").write_text("\n".join(lines) + "\n")
        written[name] = rows
    return written


def test_benchmark_command_prints_the_table_with_the_published_anchors(finetuned, tmp_path: Path) -> None:
    _, home, model = finetuned
    _fabricate_public_sets(home.benchmarks)
    env = {**os.environ, "GEOSOLVER_HOME": str(home.root), "GEOSOLVER_SPEC": str(LEARN_SPEC)}
    geosolver = str(Path(sys.executable).parent / "geosolver")
    # --model: other tests in this module publish later models into the same home (LATEST moves)
    done = subprocess.run([geosolver, "benchmark", "--model", model.version], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("**im2gps3k**", "**yfcc4k**", "**osv5m**", "| geosolver (this model) |", "| PIGEOTTO | 0.113 |",
                 "| GeoToken (no MLLM) | 0.243 |", "| StreetCLIP zero-shot | — | 0.224 |", "arXiv:2309.16020"):
        assert name in done.stdout, name
    report = json.loads((home.benchmarks / "results" / f"{model.version}.json").read_text())
    assert set(report["results"]) == {"im2gps3k", "yfcc4k", "osv5m"} and report["results"]["osv5m"]["n"] == 4
    messy = report["results"]["im2gps3k"]  # scored what it could, counted the rest by reason: no traceback, no NaN
    assert (messy["n"], messy["listed"]) == (4, 6) and messy["not_scored"] == {"missing": 1, "undecodable": 1}
    assert report["not_scored"] == {"im2gps3k": {"missing": ["absent.jpg"], "undecodable": ["cut.jpg"]}}
    assert "4 of 6 listed photos scored (not scored: 1 missing, 1 undecodable)." in done.stdout
    assert "nan" not in done.stdout.lower() and "Traceback" not in done.stderr
    shutil.rmtree(home.benchmarks / "yfcc4k" / "images")
    partial = subprocess.run([geosolver, "benchmark", "--model", model.version, "--set", "yfcc4k"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert partial.returncode == 1 and "yfcc4k is not under" in partial.stderr
    assert str(home.benchmarks / "yfcc4k" / "images") in partial.stderr  # says exactly which files are missing
    kept = json.loads((home.benchmarks / "results" / f"{model.version}.json").read_text())
    assert kept == report  # nothing scored: no results file written over the last one


def test_an_empty_test_set_is_skipped_in_valid_json(tmp_path: Path) -> None:
    """A spec may build without a test split (`test: 0`): the evaluation says so, never NaN."""
    from geosolver_data.store.atomic import write_json
    from geosolver_model.evaluation.evaluate import Predictor, evaluate, markdown_table
    from geosolver_model.evaluation.test_sets import TestSet

    empty = TestSet("dataset_test", 0, lambda ingest: iter(()), np.zeros((0, 2)), np.array([]))
    never = Predictor(ImageSpec(), lambda images: pytest.fail("nothing to predict"))
    results, _ = evaluate({"finetuned": never}, [empty], lambda _: None)
    metrics = results["dataset_test"]["finetuned"]
    assert metrics["n"] == 0 and metrics["median_km"] is None and metrics["skipped"]
    write_json(tmp_path / "eval.json", results)  # refuses NaN
    assert json.loads((tmp_path / "eval.json").read_text()) == results
    assert "| finetuned |" in markdown_table(results)
    assert stages.regressions({**results, "history": [{"model": "a", "median_km": 10.0}]}, 0.1) == []


def test_models_and_evals_list_and_show_for_people_and_machines(finetuned) -> None:
    spec, home, model = finetuned
    evaluation = stages.evaluate_model(spec, home, model, log=lambda _: None)
    env = {**os.environ, "GEOSOLVER_HOME": str(home.root), "GEOSOLVER_SPEC": str(LEARN_SPEC)}
    geosolver = str(Path(sys.executable).parent / "geosolver")

    def run(*args: str) -> str:
        done = subprocess.run([geosolver, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    listed = json.loads(run("models", "--json"))
    assert model.version in {r["version"] for r in listed} and sum(r["latest"] for r in listed) == 1
    assert model.version in run("models")
    shown = run("models", "show", "--version", model.version)
    assert f"model {model.version}" in shown and "final loss" in shown and "{" not in shown  # no dict reprs
    assert json.loads(run("models", "show", "--version", model.version, "--json"))["version"] == model.version
    evals = json.loads(run("evals", "list", "--json"))
    assert evaluation.version in {r["version"] for r in evals}
    table = run("evals", "show", "--version", evaluation.version)
    assert "| finetuned |" in table and f"model {model.version}" in table
    on_disk = json.loads((evaluation.path / "eval.json").read_text())
    assert json.loads(run("evals", "show", "--version", evaluation.version, "--json")) == on_disk


def test_the_docs_demo_table_is_written_from_the_run(finetuned, tmp_path: Path) -> None:
    from geosolver_model.evaluation.demo_docs import END, START, demo_results, rewrite

    spec, home, model = finetuned
    evaluation = stages.evaluate_model(spec, home, model, log=lambda _: None)
    doc = tmp_path / "model.md"
    doc.write_text(f"# Model\n\n{START}\nold figures\n{END}\n\nafter\n")
    assert rewrite(doc, demo_results(home)) and not rewrite(doc, demo_results(home))  # the second: nothing new
    text = doc.read_text()
    on_disk = json.loads((evaluation.path / "eval.json").read_text())["dataset_test"]
    assert "old figures" not in text and text.endswith("after\n") and f"model `{evaluation.info.model_version}`" in text
    locator = next(line for line in text.splitlines() if line.startswith("| **locator"))
    assert f"**{on_disk['locator']['median_km']:,.0f}**" in locator


def test_the_ui_tables_stay_narrow() -> None:
    """The metadata panel of the Dagster UI at 1500 px fits ~65 characters of a row (checked in Chromium:
    every column of both tables visible): short headers and fractions to 3 places."""
    from geosolver_model.evaluation.evaluate import ACCURACY_KEYS, SHORT_HEADERS, SUMMARY_KEYS, markdown_table

    metrics = {"acc_1km": 0.0333, "acc_25km": 0.5833, "acc_200km": 0.9667, "acc_750km": 1.0, "acc_2500km": 1.0,
               "median_km": 12345.67, "geoguessr_score": 4321.5, "country_acc": 0.1167, "n": 3000}
    results = {"dataset_test": {name: metrics for name in ("zeroshot_streetclip", "finetuned", "locator")}}
    for keys in (ACCURACY_KEYS, SUMMARY_KEYS):
        table = markdown_table(results, keys, "", SHORT_HEADERS)
        assert max(len(line) for line in table.splitlines() if line.startswith("|")) <= 66, table
    assert "| 0.033 |" in markdown_table(results, ACCURACY_KEYS, "", SHORT_HEADERS)
    assert "| 0.0333 |" in markdown_table(results, ACCURACY_KEYS)  # eval.md keeps eval.json's figures
