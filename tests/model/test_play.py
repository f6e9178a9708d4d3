"""`geosolver play` as a person uses it: the real command on 127.0.0.1 over a published model, its indexes
and evaluation; its JSON API for the hostile cases; and headless Chromium playing a full game by
clicking the map, uploading a photo in explore mode and browsing the errors view, with every request
the page makes checked to stay on 127.0.0.1 and nothing written under the home."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from PIL import Image

from geosolver_data.store.home import Home
from geosolver_model import stages
from geosolver_model.play.game import points
from tests.model.conftest import with_model
from tests.pipelines.browser import Browser

BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.long


def haversine(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Independent of geosolver_data.geo: the textbook formula, R = 6371.0088 km."""
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def published(learn_dataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, stages.Artifact]:
    """A home of its own (other modules publish models into the shared one): the learn dataset, a
    quickly trained model, its evaluation and both indexes."""
    spec, shared, _ = learn_dataset
    home = Home(tmp_path_factory.mktemp("play"))
    shutil.copytree(shared / "datasets", home.root / "datasets")
    quick = with_model(spec, steps=20, objectives=("soft_haversine",))
    version = Home(shared).datasets(spec.name).latest().version
    model = stages.finetune(quick, home, version, log=lambda _: None)
    stages.evaluate_model(quick, home, model, log=lambda _: None)
    embeddings = stages.embed(quick, home, model, log=lambda _: None)
    stages.image_index(quick, home, model, embeddings)
    stages.gps_index(quick, home, model, embeddings)
    return home, model


@pytest.fixture(scope="module")
def play(published) -> Iterator[tuple[str, Home]]:
    home, _ = published
    proc = subprocess.Popen([str(BIN / "geosolver"), "--home", str(home.root), "play", "--port", "0", "--seed", "7",
                             "--max-upload-mb", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    assert found, f"no address printed: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
    try:
        yield f"http://127.0.0.1:{found.group(1)}", home
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM; killed after 10 s, so a teardown never hangs the suite."""
    proc.terminate()
    try:
        proc.communicate(timeout=10)  # also drains the pipes, which a chatty server could fill
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def shard_rows(home: Home) -> dict[str, dict]:
    version = home.datasets("learn").latest().path
    shards = json.loads((version / "manifest.json").read_text())["shards"]
    table = pq.ParquetDataset([version / s["path"] for s in shards]).read(
        columns=["image_id", "split", "lat", "lon", "country", "image"])
    return {r["image_id"]: r for r in table.to_pylist()}


def test_the_api_keeps_the_truth_until_the_guess_and_refuses_bad_input(play) -> None:
    url, home = play
    rows = shard_rows(home)
    info = requests.get(f"{url}/api/info", timeout=30).json()
    assert info["test_images"] == sum(r["split"] == "test" for r in rows.values())
    game = requests.post(f"{url}/api/games", timeout=30).json()
    assert set(game) == {"game", "rounds"} and game["rounds"] == 5  # no image id, no place
    photo = requests.get(f"{url}/api/games/{game['game']}/rounds/1/image", timeout=30)
    assert photo.headers["Content-Type"] == "image/jpeg"
    truth = next(r for r in rows.values() if r["image"] == photo.content)
    assert truth["split"] == "test", "a round must show a test-split photo"
    for bad in ({"lat": 91, "lon": 0}, {"lat": "x", "lon": 0}, {}):
        refused = requests.post(f"{url}/api/games/{game['game']}/guess", json=bad, timeout=30)
        assert refused.status_code == 400 and "error" in refused.json()
    scored = requests.post(f"{url}/api/games/{game['game']}/guess", json={"lat": 10.0, "lon": 20.0}, timeout=60).json()
    assert scored["image_id"] == truth["image_id"] and scored["round"] == 1
    km = haversine((10.0, 20.0), (truth["lat"], truth["lon"]))
    assert scored["person"]["km"] == pytest.approx(km, abs=0.1)
    assert scored["person"]["points"] == round(5000 * math.exp(-km / 1492.7))
    assert requests.post(f"{url}/api/games/nope/guess", json={"lat": 0, "lon": 0}, timeout=30).status_code == 404
    # Test-split photos are never served as reference thumbnails (the neighbours come from train/val).
    assert requests.get(f"{url}/api/thumb/{truth['image_id']}", timeout=30).status_code == 404
    # An upload over --max-upload-mb (1 MB here), and bytes that are no image: refused with a reason.
    big = requests.post(f"{url}/api/explore", files={"photo": ("big.jpg", b"\xff" * 2_000_000)}, timeout=30)
    assert big.status_code == 413
    junk = requests.post(f"{url}/api/explore", files={"photo": ("junk.jpg", b"<html>not a photo</html>")}, timeout=30)
    assert junk.status_code == 422 and "cannot read image junk.jpg" in junk.json()["error"]


def test_the_api_holds_under_pressure_and_malformed_bodies(play) -> None:
    """One guess per round whatever arrives at once; every malformed body a 400 with a reason, never a 500."""
    from concurrent.futures import ThreadPoolExecutor

    url, _ = play
    game = requests.post(f"{url}/api/games", timeout=30).json()["game"]
    at = f"{url}/api/games/{game}/guess"
    with ThreadPoolExecutor(25) as pool:
        answers = list(pool.map(lambda _: requests.post(at, json={"lat": 1, "lon": 2, "round": 1}, timeout=60),
                                range(50)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 49, codes
    assert requests.post(at, json={"lat": 1, "lon": 2, "round": 2}, timeout=30).json()["round"] == 2
    bodies = [b"", b"not json", b"\xff\xfe{}", b'{"lat": ' + b"9" * 5000 + b', "lon": 0}', b"[" * 200_000,
              b"[" * 60_000, b"[1, 2]", b'{"lat": 1e400, "lon": 0}', b'{"lat": NaN, "lon": 0}']
    for body in bodies:
        answer = requests.post(at, data=body, headers={"Content-Type": "application/json"}, timeout=30)
        assert answer.status_code == 400 and answer.json()["error"], (body[:20], answer.status_code)
    bad_form = requests.post(f"{url}/api/explore", data=b"--x\r\nbroken", timeout=30,
                             headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert bad_form.status_code == 400, bad_form.text
    from tests.data.test_images import png_header_only

    bomb = requests.post(f"{url}/api/explore", files={"photo": ("bomb.png", png_header_only(30_000, 30_000))},
                         timeout=30)  # the file holds no pixel data: only a refusal from the header answers 422
    assert bomb.status_code == 422 and "too_many_pixels: 30000x30000" in bomb.json()["error"]
    page = requests.get(f"{url}/", timeout=30)
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"


HOSTILE = {"creator": '<img src=x onerror="window.__pwned=1">Jane & "Joe"',
           "license": "<script>window.__pwned=2</script>CC BY-SA 4.0"}


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_hostile_strings_from_a_source_are_text_in_the_page(published, tmp_path: Path) -> None:
    """Creators and licences as Wikimedia Commons and URL lists send them (HTML fragments), in the rows the
    page shows: they appear as the characters they are, and nothing runs."""
    home, _ = published
    hostile = Home(tmp_path / "home")
    shutil.copytree(home.root, hostile.root)
    version = hostile.datasets("learn").latest()
    manifest = json.loads((version.path / "manifest.json").read_text())
    for shard in manifest["shards"]:  # the same rows with hostile strings (the manifest's sums kept true)
        path = version.path / shard["path"]
        table = pq.read_table(path)
        for column, value in HOSTILE.items():
            table = table.set_column(table.schema.get_field_index(column), column,
                                     pa.array([value] * table.num_rows, table.schema.field(column).type))
        pq.write_table(table, path)
        shard["bytes"], shard["sha256"] = path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()
        manifest["files"][shard["path"]], manifest["file_bytes"][shard["path"]] = shard["sha256"], shard["bytes"]
    (version.path / "manifest.json").write_text(json.dumps(manifest))
    proc = subprocess.Popen([str(BIN / "geosolver"), "--home", str(hostile.root), "play", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    found = re.search(r"127\.0\.0\.1:(\d+)/", proc.stdout.readline())
    assert found, proc.stderr.read() if proc.poll() is not None else "no address printed"
    url = f"http://127.0.0.1:{found.group(1)}"
    browser = Browser(CHROMIUM, tmp_path / "chromium", width=1500, height=1100)
    try:
        rows = shard_rows(hostile)
        upload = tmp_path / "upload.jpg"
        upload.write_bytes(next(r for r in rows.values() if r["split"] == "train")["image"])
        browser.open(f"{url}/#explore")
        browser.wait_for("document.body.dataset.ready")
        browser.click_text("Explore")
        browser.set_files("#upload", [upload])
        caption = browser.wait_for("document.querySelector('#neighbours figcaption') && "
                                   "document.querySelector('#neighbours figcaption').innerText")
        assert HOSTILE["creator"] in caption and HOSTILE["license"] in caption
        browser.click_text("Play")
        browser.wait_for("document.querySelector('#round-photo').complete")
        browser.js("document.querySelector('#guess-button').hidden = false; game.guess = {lat: 1, lon: 2}; "
                   "submitGuess()")
        credit = browser.wait_for("document.querySelector('#round-attribution').innerText")
        assert HOSTILE["license"] in credit
        assert browser.js("window.__pwned === undefined && !document.querySelector('img[src=\"x\"]') && "
                          "!document.querySelector('#neighbours script, #round-result script')")
    finally:
        browser.close()
        _stop(proc)


def test_sigterm_stops_the_server_cleanly(published) -> None:
    """Exit status 0: the server's own handler stopped it (a default SIGTERM death is -15, a kill -9)."""
    home, _ = published
    proc = subprocess.Popen([str(BIN / "geosolver"), "--home", str(home.root), "play", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "http://127.0.0.1:" in proc.stdout.readline()
    _stop(proc)
    assert proc.returncode == 0


def test_points_follow_the_game_formula() -> None:
    assert points(0) == 5000 and points(1492.7) == round(5000 / math.e) and points(10_000) == 6 and points(20_000) == 0


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_a_person_plays_a_game_uploads_a_photo_and_reads_the_errors(play, tmp_path: Path) -> None:
    url, home = play
    rows = shard_rows(home)
    before = snapshot(home.root)
    browser = Browser(CHROMIUM, tmp_path / "chromium", width=1500, height=1100)
    try:
        browser.send("Network.enable")
        browser.open(f"{url}/#play")
        browser.wait_for("document.body.dataset.ready && document.querySelector('#round-photo').complete "
                         "&& document.querySelector('#round-photo').naturalWidth")
        assert browser.js("document.querySelectorAll('#play-map path.country').length") > 200
        shot = Image.open(browser.screenshot(tmp_path / "play.png")).convert("RGB")
        assert _map_is_drawn(browser, shot, "#play-map")

        targets = [(48.86, 2.35), (40.71, -74.0), (-33.87, 151.21), (35.68, 139.69), (-23.55, -46.63)]
        person_total = model_total = 0
        for number, (lat, lon) in enumerate(targets, start=1):
            browser.wait_for(f"document.querySelector('#round-title').innerText === 'Round {number} of 5'")
            box = browser.js("(() => { const m = document.querySelector('#play-map'), r = m.getBoundingClientRect();"
                             " return {x: r.x + m.clientLeft, y: r.y + m.clientTop, w: m.clientWidth,"
                             " h: m.clientHeight}; })()")
            # The page's projection, computed here from the map's content box: the whole world in
            # equirectangular (360 x 180 degrees), fitted and centred ("meet").
            scale = min(box["w"] / 360, box["h"] / 180)
            left, top = box["x"] + (box["w"] - 360 * scale) / 2, box["y"] + (box["h"] - 180 * scale) / 2
            browser.click_at(left + (lon + 180) * scale, top + (90 - lat) * scale)
            at = browser.wait_for("document.querySelector('#guess-at').dataset.lat && "
                                  "{lat: +document.querySelector('#guess-at').dataset.lat, "
                                  "lon: +document.querySelector('#guess-at').dataset.lon}")
            pixel = 1 / scale  # degrees; mouse events land on whole pixels
            assert abs(at["lat"] - lat) < 1.5 * pixel and abs(at["lon"] - lon) < 1.5 * pixel, (at, lat, lon)
            browser.click_text("Guess")
            text = browser.wait_for("document.querySelector('#round-result').dataset.imageId && "
                                    "document.querySelector('#round-result').innerText.includes('points') && "
                                    "document.querySelector('#round-result').innerText")
            image_id = browser.js("document.querySelector('#round-result').dataset.imageId")
            truth = rows[image_id]
            assert truth["split"] == "test"
            km = haversine((at["lat"], at["lon"]), (truth["lat"], truth["lon"]))
            shown = re.search(r"You: ([\d,.]+) km, (\d+) points", text)
            assert shown, text
            assert float(shown.group(1).replace(",", "")) == pytest.approx(km, abs=0.11)
            assert int(shown.group(2)) == round(5000 * math.exp(-km / 1492.7))
            model = re.search(r"Model \(.*?\): ([\d,.]+) km, (\d+) points", text)
            model_km = float(model.group(1).replace(",", ""))  # shown to 0.1 km: its points within 1 of the formula
            assert abs(int(model.group(2)) - 5000 * math.exp(-model_km / 1492.7)) <= 1
            person_total += int(shown.group(2))
            model_total += int(model.group(2))
            assert browser.js("document.querySelectorAll('#play-map circle').length") == 3  # truth, you, model
            if number < 5:
                browser.click_text("Next round")
        final = browser.wait_for("document.querySelector('#round-result .final') && "
                                 "document.querySelector('#round-result .final').innerText")
        assert f"{person_total} to {model_total}" in final
        assert browser.js("document.querySelector('#total-person').innerText") == str(person_total)
        browser.screenshot(tmp_path / "game-over.png")

        # Explore: a train photo's own bytes; its nearest reference image must be itself.
        train_id, train = next((i, r) for i, r in rows.items() if r["split"] == "train")
        upload = tmp_path / "upload.jpg"
        upload.write_bytes(train["image"])
        browser.click_text("Explore")
        browser.set_files("#upload", [upload])
        browser.wait_for("document.querySelectorAll('#explore-map circle.candidate').length === 5")
        browser.wait_for("[...document.querySelectorAll('.neighbour-thumb')].length > 0 && "
                         "[...document.querySelectorAll('.neighbour-thumb')].every(i => i.complete && i.naturalWidth)")
        assert browser.js("document.querySelector('.neighbour-thumb').alt") == train_id
        assert "Nearest place" in browser.js("document.querySelector('#explore-status').innerText")
        assert browser.js("document.querySelectorAll('#candidates li').length") == 5

        # Errors: every test image of the evaluation, per comparator and country; a click shows one.
        predictions = pq.read_table(next(home.evals.root.glob("*/predictions.parquet"))).to_pylist()
        published = [p for p in predictions if p["comparator"] == "finetuned"]
        browser.click_text("Errors")
        browser.wait_for(f"document.querySelectorAll('#errors-map circle.error').length === {len(published)}")
        assert len(published) == sum(r["split"] == "test" for r in rows.values())
        country = max({p["country"] for p in published}, key=lambda c: sum(p["country"] == c for p in published))
        browser.js(f"(() => {{ const s = document.querySelector('#country'); s.value = {json.dumps(country)};"
                   " s.dispatchEvent(new Event('change')); })()")
        n = sum(p["country"] == country for p in published)
        browser.wait_for(f"document.querySelectorAll('#errors-map circle.error').length === {n}")
        untrained = [p for p in predictions if p["comparator"] == "untrained"]
        browser.js("(() => { const s = document.querySelector('#comparator'); s.value = 'untrained';"
                   " s.dispatchEvent(new Event('change')); })()")
        browser.wait_for(f"document.querySelectorAll('#errors-map circle.error').length === {len(untrained)}")
        # The figures shown are eval.json's (one function computes both), not the page's own arithmetic.
        figures = json.loads(next(home.evals.root.glob("*/eval.json")).read_text())["dataset_test"]["untrained"]
        summary = browser.js("document.querySelector('#errors-summary').innerText")
        assert f"median error {figures['median_km']:,.2f} km, within 25 km {figures['acc_25km']:.3f}" in summary
        browser.js("document.querySelector('#errors-map circle.error').dispatchEvent(new MouseEvent('click'))")
        browser.wait_for("document.querySelector('#error-photo').complete && "
                         "document.querySelector('#error-photo').naturalWidth")
        assert re.search(r"error [\d,.]+ km", browser.js("document.querySelector('#error-detail').innerText"))
        browser.screenshot(tmp_path / "errors.png")

        urls = browser.requested_urls()
        assert urls and all(u.startswith(url) or u.startswith(("data:", "blob:")) for u in urls), \
            [u for u in urls if not u.startswith(url)]
    finally:
        browser.close()
    assert snapshot(home.root) == before, "geosolver play wrote under GEOSOLVER_HOME"


def _map_is_drawn(browser: Browser, shot: Image.Image, selector: str) -> bool:
    """Both land (#f4f1e8) and ocean (#cfe3f1) fill a fair share of the map's pixels."""
    box = browser.js(f"(() => {{ const r = document.querySelector('{selector}').getBoundingClientRect();"
                     " return [r.x, r.y, r.x + r.width, r.y + r.height]; })()")
    pixels = np.asarray(shot.crop(tuple(round(v) for v in box)))
    land = np.all(np.abs(pixels.astype(int) - (0xF4, 0xF1, 0xE8)) < 6, axis=-1).mean()
    ocean = np.all(np.abs(pixels.astype(int) - (0xCF, 0xE3, 0xF1)) < 6, axis=-1).mean()
    return land > 0.15 and ocean > 0.35


def test_a_home_without_a_model_gets_a_clear_error(tmp_path: Path) -> None:
    run = subprocess.run([str(BIN / "geosolver"), "--home", str(tmp_path), "play", "--port", "0"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "make run" in run.stderr, run.stderr
