import hashlib
import html
import itertools
import json
import re
import shutil
from pathlib import Path

import duckdb
import h3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from geosolver_data import stages
from geosolver_data.report import validate
from geosolver_data.report.catalog import open_catalog
from geosolver_data.spec import DatasetSpec, load_spec
from geosolver_data.store.artifact import Artifact
from geosolver_data.store.atomic import current_umask
from geosolver_data.store.home import DatasetLayout
from tests.conftest import TINY_SPEC


def build(home: Path) -> tuple[DatasetSpec, DatasetLayout, Artifact]:
    spec = load_spec(TINY_SPEC)
    layout = DatasetLayout(home, spec.name)
    return spec, layout, stages.build_dataset(spec, layout, log=lambda _: None)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetSpec, DatasetLayout, Artifact]:
    return build(tmp_path_factory.mktemp("home"))


def _rows(published: Artifact) -> pa.Table:
    return pq.read_table(published.path / "shards")


def test_shards_have_the_contract_columns(built) -> None:
    spec, _, published = built
    table = _rows(published)
    for col in ("image_id", "source", "lat", "lon", "country", "split", "image", "width", "height", "sha256",
                "phash", "captured_at", "sequence_id", "license", "creator", "h3_r1", "h3_r3", "h3_r5"):
        assert col in table.column_names, col
    assert table.schema.field("h3_r3").type == pa.uint64() and table.schema.field("phash").type == pa.uint64()
    assert set(table.column("split").to_pylist()) <= {"train", "validation", "test"}
    assert all(v.startswith("synthetic:") for v in table.column("image_id").to_pylist())
    assert table.num_rows == published.manifest["rows"] <= spec.balance.target_size


def test_invariants_checked_independently(built) -> None:
    spec, _, published = built
    t = _rows(published).to_pylist()
    shas = [r["sha256"] for r in t]
    assert len(shas) == len(set(shas))
    assert all(hashlib.sha256(r["image"]).hexdigest() == r["sha256"] for r in t)
    for a, b in itertools.combinations(t, 2):
        assert (a["phash"] ^ b["phash"]).bit_count() > spec.dedup.phash_threshold
    cells = np.unique([r["h3_r3"] for r in t], return_counts=True)[1]
    assert cells.max() <= spec.balance.cap
    block_split: dict[str, set[str]] = {}
    for r in t:
        block = h3.cell_to_parent(h3.int_to_str(r["h3_r3"]), spec.balance.split_resolution)
        block_split.setdefault(block, set()).add(r["split"])
    assert all(len(s) == 1 for s in block_split.values())
    assert {s for v in block_split.values() for s in v} == {"train", "validation", "test"}


def test_manifest_matches_files(built) -> None:
    _, _, published = built
    m = published.manifest
    for shard in m["shards"]:
        data = (published.path / shard["path"]).read_bytes()
        assert len(data) == shard["bytes"] and hashlib.sha256(data).hexdigest() == shard["sha256"]
        assert pq.ParquetFile(published.path / shard["path"]).metadata.num_rows == shard["rows"]
    assert sum(s["rows"] for s in m["shards"]) == m["rows"]
    assert m["version"] == published.path.name and m["spec"]["name"] == "tiny"
    assert m["rejects"] == {"invalid_coordinates": 2, "missing_gps": 2, "not_an_image": 2, "undecodable": 2}
    assert set(m["dedup_dropped"]) == {"exact", "perceptual", "same_place"}
    assert (published.path / "coverage.png").read_bytes()[:4] == b"\x89PNG"


def test_dataset_card_accounts_for_every_image(built) -> None:
    _, _, published = built
    front, card = (published.path / "README.md").read_text().removeprefix("---\n").split("\n---\n\n", 1)
    assert card.startswith(f"# Dataset card: tiny {published.version}")
    meta = yaml.safe_load(front)
    assert meta["license"] == "other" and meta["size_categories"] == ["n<1K"] and meta["task_categories"]
    assert {s["name"]: s["num_examples"] for s in meta["dataset_info"]["splits"]} == {
        k: v for k, v in published.manifest["splits"].items() if v}
    counts = {}  # section title -> the count column of its table
    for block in card.split("\n## ")[1:]:
        title, _, body = block.partition("\n")
        cells = [line.split("|") for line in body.splitlines() if line.startswith("| ")]
        counts[title] = [int(c[-2]) for c in cells if c[-2].strip().isdigit()]
    rows = published.manifest["rows"]
    assert sum(counts["Sources"]) == sum(counts["Licences"]) == sum(counts["Attribution"]) == rows
    assert sum(counts["What was left out"]) == sum(published.manifest["rejects"].values())


def test_validate_finds_nothing_wrong_and_catches_tampering(built, tmp_path: Path) -> None:
    spec, _, published = built
    assert validate.manifest_problems(published.path) == []
    assert validate.duplicate_sha256(published.path) == []
    assert validate.near_duplicates(published.path, spec.dedup.phash_threshold) == []
    assert validate.invalid_coordinates(published.path) == []
    assert validate.quota_problems(published.path, spec) == []
    assert validate.split_overlap(published.path, spec) == []
    copy = tmp_path / "copy"
    shutil.copytree(published.path, copy)
    victim = copy / published.manifest["shards"][0]["path"]
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    (copy / "shards" / "stray.parquet").write_bytes(b"")
    problems = validate.manifest_problems(copy)
    assert any("sha256 differs" in p for p in problems) and any("stray.parquet" in p for p in problems)


def test_republishing_gives_the_same_version_and_keeps_the_first(built) -> None:
    spec, layout, published = built
    again = stages.publish(spec, layout)
    assert again.version == published.version and not again.new
    assert again.manifest["created_at"] == published.manifest["created_at"]
    assert not list(layout.versions.glob(".staging-*"))
    assert layout.latest_version() == published.version


def test_a_fresh_build_elsewhere_gives_the_same_version(built, tmp_path: Path) -> None:
    _, _, published = built
    assert build(tmp_path / "other")[2].version == published.version


def test_catalog_views(built) -> None:
    _, layout, published = built
    con = open_catalog(layout.home)
    assert con.execute("SELECT count(*) FROM tiny").fetchone()[0] == published.manifest["rows"]
    assert con.execute("SELECT count(*) FROM tiny_rejects").fetchone()[0] == 8
    assert con.execute("SELECT count(*) FROM tiny_dropped WHERE duplicate_of IS NOT NULL").fetchone()[0] > 0
    assert con.execute("SELECT version FROM datasets").fetchall() == [(published.version,)]


def test_a_copied_home_queries_its_own_files(built, tmp_path: Path) -> None:
    """The catalog names files relative to the home: a copy answers from the copy, even with the
    original gone, and a plain DuckDB session started in the home reads it too."""
    _, layout, published = built
    copy = tmp_path / "copied-home"
    shutil.copytree(layout.home, copy)
    aside = layout.home.with_name(layout.home.name + "-aside")
    layout.home.rename(aside)
    try:
        con = open_catalog(copy)
        assert con.execute("SELECT count(*) FROM tiny").fetchone()[0] == published.manifest["rows"]
        path = con.execute("SELECT path FROM datasets").fetchone()[0]
        assert not Path(path).is_absolute() and (copy / path / "manifest.json").exists()
        con.close()
        plain = duckdb.connect(str(copy / "catalog.duckdb"), read_only=True)
        plain.execute(f"SET file_search_path = '{copy.as_posix()}'")
        assert plain.execute("SELECT count(*) FROM tiny_rejects").fetchone()[0] == 8
    finally:
        aside.rename(layout.home)


def test_downstream_stage_without_upstream_says_what_to_run(tmp_path: Path) -> None:
    spec = load_spec(TINY_SPEC)
    layout = DatasetLayout(tmp_path, spec.name)
    with pytest.raises(stages.ArtifactMissing, match="Materialise raw_images"):
        stages.deduplicate_dataset(spec, layout)
    with pytest.raises(stages.ArtifactMissing, match="balanced_dataset"):
        stages.publish(spec, layout)
    assert json.dumps(spec.to_dict())


def test_validate_reports_overlapping_splits_and_quota_breaches(tmp_path: Path) -> None:
    spec = load_spec(TINY_SPEC)  # cap 3, target 80, split blocks at resolution 1
    (tmp_path / "shards").mkdir()
    same_cell = 0x832A100FFFFFFFF
    pq.write_table(pa.table({
        "h3_r3": pa.array([same_cell] * 4 + [0x8344A5FFFFFFFFF], pa.uint64()),
        "split": ["train", "train", "train", "test", "validation"],
    }), tmp_path / "shards" / "x.parquet")
    overlap = validate.split_overlap(tmp_path, spec)
    assert overlap == ["block 812a3ffffffffff is in splits ['test', 'train']"]
    assert validate.quota_problems(tmp_path, spec) == [f"cell {same_cell:x} has 4 images > cap 3"]


def test_the_dataset_cards_load_snippet_runs_as_pasted_and_every_column_is_described(built, tmp_path: Path) -> None:
    import subprocess
    import sys

    _, layout, published = built
    card = (published.path / "README.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    env = {"GEOSOLVER_HOME": str(layout.home), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run([sys.executable, "-c", snippet], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = pq.read_table(published.path / "shards").filter(pc.field("split") == "train").slice(0, 1).to_pylist()[0]
    assert done.stdout.split()[2:4] == [str(row["lat"]), str(row["lon"])]  # the first train row, as stored
    columns = card.split("## Columns", 1)[1].split("## ", 1)[0]
    for name in pq.read_schema(next((published.path / "shards").glob("*.parquet"))).names:
        escaped = name.replace("_", "\\_")  # as the card's Markdown writes it
        described = next(line for line in columns.splitlines() if line.startswith(f"| {escaped} |"))
        assert described.rstrip(" |").split("|")[-1].strip(), name
    assert "![where the photos are, by split](coverage.png)" in card


def test_a_version_folder_loads_with_hugging_face_datasets(built, tmp_path: Path, monkeypatch) -> None:
    """The version folder is a Hugging Face dataset: its README front matter names the splits and the
    features, so `load_dataset(folder)` decodes `image` as an Image without a cast."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets  # the dev lock's; imported here, it is slow to import
    _, _, published = built
    loaded = datasets.load_dataset(str(published.path), cache_dir=str(tmp_path / "hf"))
    wanted = {k: v for k, v in published.manifest["splits"].items() if v}
    assert {name: len(split) for name, split in loaded.items()} == wanted
    train = loaded["train"]
    assert isinstance(train.features["image"], datasets.Image)
    assert set(train.column_names) == set(published.manifest["columns"])
    first = pq.read_table(published.path / published.manifest["shards"][0]["path"]).slice(0, 1).to_pylist()[0]
    row = train[0]
    assert row["image_id"] == first["image_id"] and row["image"].size == (first["width"], first["height"])


HOSTILE_CREATORS = ["Ann", "Bob\n# not a heading", "<script>alert(1)</script>", "Nul\x00byte", "a | b",
                    "[click](javascript:alert(1))", "![x](http://127.0.0.1:1/x.png)", "`code` *bold* _em_"]


def test_hostile_strings_are_text_in_a_markdown_table() -> None:
    """Eight creators as sources send them: the table renders with eight rows whose cells are those
    characters, no raw HTML, no link or image, and no control byte in the file."""
    from markdown_it import MarkdownIt

    from geosolver_data.report.markdown import table

    text = table(["creator", "images"], [(c, i) for i, c in enumerate(HOSTILE_CREATORS)])
    assert "\x00" not in text and len(text.splitlines()) == 2 + len(HOSTILE_CREATORS)
    rendered = MarkdownIt("commonmark").enable("table").render(text)
    assert "<script" not in rendered and "<a " not in rendered and "<img" not in rendered and "<h1" not in rendered
    cells = re.findall(r"<tr>\s*<td>(.*?)</td>\s*<td>(\d+)</td>", rendered, re.S)
    assert [int(n) for _, n in cells] == list(range(len(HOSTILE_CREATORS)))
    shown = [html.unescape(re.sub(r"<[^>]+>", "", c)) for c, _ in cells]
    assert shown == [" ".join(c.replace("\x00", " ").split()) for c in HOSTILE_CREATORS]


def test_checks_run_under_a_home_whose_path_has_quotes(built, tmp_path: Path) -> None:
    """The blocking checks pass paths to DuckDB as parameters, so any folder name works as a home."""
    spec, _, published = built
    odd = tmp_path / "it's a \"home\"" / published.version
    shutil.copytree(published.path, odd)
    assert validate.duplicate_sha256(odd) == [] and validate.invalid_coordinates(odd) == []
    assert validate.near_duplicates(odd, spec.dedup.phash_threshold) == []


def test_a_pointer_must_name_a_version_folder(built, tmp_path: Path) -> None:
    from geosolver_data.store.artifact import ArtifactMissing, Shelf

    _, _, published = built
    root = tmp_path / "datasets" / "tiny"
    shutil.copytree(published.path, root / published.version)
    shelf = Shelf("dataset", root, produced_by="dataset_shards")
    for bad in ("../../../etc", "/etc", "a/b", ".."):
        (root / "LATEST").write_text(bad + "\n")
        with pytest.raises(ArtifactMissing, match="not a version name"):
            shelf.latest()
        with pytest.raises(ArtifactMissing, match="not a dataset version name"):
            shelf.get(bad)
    assert [a.version for a in shelf.all()] == [published.version]
    (root / "LATEST").write_text(published.version)
    assert shelf.latest().version == published.version


def _flip(path: Path, share: float = 0.01) -> None:
    """Flip `share` of a file's bytes, spread through it (as a failing disk or a bad copy would)."""
    data = bytearray(path.read_bytes())
    for i in range(0, len(data), max(1, int(1 / share))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_every_artifact_lists_its_files_and_a_damaged_one_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    from geosolver_data.store.artifact import ArtifactDamaged, Shelf

    shelf = Shelf("model", tmp_path / "models", produced_by="finetuned_model")
    built_count = []

    def build(staging: Path) -> dict:
        built_count.append(1)
        (staging / "finetuned").mkdir()
        (staging / "finetuned" / "model.safetensors").write_bytes(bytes(range(256)) * 400)
        (staging / "card.md").write_text("a card")
        (staging / "finetuned" / "model.safetensors").chmod(0o600)  # as safetensors writes it
        return {"created_at": "2026-01-01T00:00:00+00:00", "dataset": {"name": "demo", "version": "d1"},
                "base": "tiny", "objectives": {"infonce": {"final_loss": 1.5, "samples_per_s": 9.0}}}

    first = shelf.publish(build, "v1")
    modes = {p.stat().st_mode & 0o777 for p in first.path.rglob("*") if p.is_file()}
    assert modes == {0o666 & ~current_umask()}  # no 0600 weights on a shared volume
    assert first.info.dataset.version == "d1" and first.info.objectives["infonce"].final_loss == 1.5
    assert set(first.manifest["files"]) == {"finetuned/model.safetensors", "card.md"}
    assert first.manifest["file_bytes"]["card.md"] == 6 and shelf.problems("v1") == []
    assert shelf.publish(build, "v1").new is False and len(built_count) == 1  # intact: not built again
    _flip(first.path / "finetuned" / "model.safetensors")
    with pytest.raises(ArtifactDamaged) as info:
        shelf.require_intact("v1", "finetuned")
    message = str(info.value)
    assert "finetuned/model.safetensors: sha256 differs" in message and "materialise finetuned_model again" in message
    assert "\n" not in message
    assert shelf.require_intact("v1", "other").version == "v1"  # another folder of it is intact
    (tmp_path / "models" / ".staging-left-by-kill-9").mkdir()  # a killed publisher's leftovers
    again = shelf.publish(build, "v1")  # the remedy the message names
    assert again.new and len(built_count) == 2 and shelf.problems("v1") == []
    assert len(list((tmp_path / "models").glob(".damaged-v1-*"))) == 1  # set aside, not overwritten
    assert not list((tmp_path / "models").glob(".staging-*"))
    (again.path / "card.md").unlink()
    assert shelf.problems("v1") == ["card.md: missing"]
    manifest = json.loads((again.path / "manifest.json").read_text())
    (again.path / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "dataset"}))
    with pytest.raises(ArtifactDamaged, match=r"manifest\.json: not a model manifest \(dataset: Field required\)"):
        shelf.get("v1")
    (again.path / "manifest.json").write_text('{"cut')
    with pytest.raises(ArtifactDamaged, match=r"manifest\.json: unreadable"):
        shelf.get("v1")


def test_a_dataset_version_with_a_missing_shard_is_refused_and_rebuilt(tmp_path: Path) -> None:
    import subprocess
    import sys

    spec, layout, published = build(tmp_path / "home")
    shard = published.path / published.manifest["shards"][0]["path"]
    shard.unlink()
    geosolver = Path(sys.executable).parent / "geosolver"
    env = {"GEOSOLVER_HOME": str(tmp_path / "home"), "GEOSOLVER_SPEC": str(TINY_SPEC), "PATH": "/usr/bin:/bin"}
    for command in (["show"], ["sql", "SELECT count(*) FROM tiny"]):
        run = subprocess.run([str(geosolver), *command], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 1 and "is damaged" in run.stderr and "missing" in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    again = stages.publish(spec, layout)  # materialising dataset_shards again: rebuilt from the work tables
    assert again.version == published.version and shard.exists()
    assert layout.shelf.problems(again.version) == []
    assert list(layout.versions.glob(f".damaged-{published.version}-*"))
    (again.path / "manifest.json").write_text("{")
    run = subprocess.run([str(geosolver), "validate"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "manifest.json: unreadable" in run.stderr and "Traceback" not in run.stderr


def test_a_version_from_before_the_split_rename_reads_as_today(built, tmp_path: Path) -> None:
    """Versions published before December 2026 say `val`: its rows are the validation split to every reader,
    and a new version keeps its split blocks (no image moves between splits across the rename)."""
    spec, layout, published = built
    today = stages.previous_splits(spec, layout)
    assert set(today.values()) == {"train", "validation", "test"}
    old_home = tmp_path / "home"
    shutil.copytree(layout.home, old_home)
    old = DatasetLayout(old_home, spec.name)
    folder = old.version_dir(published.version)
    manifest = json.loads((folder / "manifest.json").read_text())
    for shard in manifest["shards"]:  # what an older version holds: `val` in the rows, the manifest and its spec
        table = pq.read_table(folder / shard["path"])
        renamed = pc.replace_substring_regex(table.column("split"), "^validation$", "val")
        column = table.schema.get_field_index("split")
        pq.write_table(table.set_column(column, "split", renamed), folder / shard["path"])
        shard["split"] = {"validation": "val"}.get(shard["split"], shard["split"])
    manifest["splits"] = {{"validation": "val"}.get(k, k): v for k, v in manifest["splits"].items()}
    balance = manifest["spec"]["balance"]
    balance["splits"] = {{"validation": "val"}.get(k, k): v for k, v in balance["splits"].items()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert stages.previous_splits(spec, old) == today
    info = old.shelf.get(published.version).info
    assert info.shard_paths(folder, "validation") == [folder / s.path for s in info.shards if s.split == "val"] != []
