import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from geosolver_data.model_spec import load_spec, parse_spec  # the whole spec, as every command reads it
from geosolver_data.spec import SpecError, default_spec_path

TINY_PATH = Path(__file__).parents[1] / "specs" / "tiny.yaml"
TINY = yaml.safe_load(TINY_PATH.read_text())


def test_bundled_demo_spec_loads() -> None:
    spec = load_spec(default_spec_path())
    assert spec.name == "demo"
    assert spec.region_names == ["europe", "americas", "asia_pacific"]
    assert spec.balance.resolution in spec.h3_resolutions


def test_env_var_selects_the_spec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**TINY, "name": "other"}))
    monkeypatch.setenv("GEOSOLVER_SPEC", str(path))
    assert load_spec().name == "other"


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": "red"}, "unknown key"),
    ({"regions": [{"name": "x", "bbox": [10, 0, 5, 1]}]}, "not a valid"),
    ({"regions": [{"name": "a b", "bbox": [0, 0, 1, 1]}]}, "letters, digits"),
    ({"sources": [{"type": "ftp"}]}, "expected one of"),
    ({"sources": [{"type": "local"}]}, "needs 'path'"),
    ({"h3_resolutions": [5, 3]}, "increasing"),
    ({"balance": {"resolution": 4}}, "must be one of h3_resolutions"),
    ({"balance": {"split_resolution": 16}}, "0..15"),
    ({"balance": {"splits": {"train": 0.5, "val": 0.1}}}, "must sum to 1"),
    ({"dedup": {"phash_threshold": 40}}, "0..16"),
    ({"image": {"max_sides": 10}}, "unknown key"),
])
def test_bad_specs_fail_with_a_message_naming_the_problem(change: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec({**TINY, **change})


def _set(raw: dict, path: str, value: object) -> dict:
    """A copy of `raw` with the value at a dotted path ('regions.0.bbox') replaced."""
    raw = yaml.safe_load(yaml.safe_dump(raw))
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = raw
    for part in parents:
        node = node[part] if isinstance(part, int) else node.setdefault(part, {})
    node[last] = value
    return raw


# Every message is one line that names the key path and what was expected.
@pytest.mark.parametrize(("path", "value", "message"), [
    ("balance.cap", "fifty", "balance.cap: expected a positive integer, got 'fifty'"),
    ("balance.cap", 12.5, "balance.cap: expected a positive integer, got 12.5"),
    ("balance.target_size", 0, "balance.target_size: expected a positive integer, got 0"),
    ("regions.0.bbox", ["a", 35, 32, 61], "regions[0].bbox[0]: expected a number, got 'a'"),
    ("regions.0.bbox", [1, 2, 3], "regions[0].bbox: expected a list of 4 numbers, got [1, 2, 3]"),
    ("h3_resolutions", ["a", 3], "h3_resolutions[0]: expected an integer in 0..15, got 'a'"),
    ("h3_resolutions", [1, 3, 16], "h3_resolutions[2]: expected an integer in 0..15, got 16"),
    ("balance.splits", {"train": -0.2, "val": 0.6, "test": 0.6},
     "balance.splits.train: expected a number in 0..1, got -0.2"),
    ("balance.splits", {"train": 0.7, "val": 0.1, "test": 0.1}, "balance.splits: fractions must sum to 1"),
    ("balance.splits", {"train": 0.8, "exam": 0.2}, "balance.splits: unknown key 'exam', expected one of"),
    ("image.max_pixels", 0, "image.max_pixels: expected a positive integer, got 0"),
    ("image.max_pixels", "64M", "image.max_pixels: expected a positive integer, got '64M'"),
    ("shards.target_mb", -1, "shards.target_mb: expected a positive number, got -1"),
    ("shards.target_mb", "2", "shards.target_mb: expected a positive number, got '2'"),
    ("workers", -1, "workers: expected an integer in 0..512, got -1"),
    ("workers", 1.5, "workers: expected an integer in 0..512, got 1.5"),
    ("dedup.same_place_m", 0, "dedup.same_place_m: expected a positive number, got 0"),
    ("sources.0.per_region", "many", "sources[0].per_region: expected a positive integer, got 'many'"),
    ("sources.0.content_retries", -1, "sources[0].content_retries: expected an integer >= 0, got -1"),
    ("sources.0.watermark", "yes", "sources[0].watermark: expected true or false, got 'yes'"),
    ("image.resample", "nearest", "image.resample: expected one of 'box', 'bilinear', 'bicubic', 'lanczos'"),
    ("model.lr", "1e-3", "model.lr: expected a positive number, got '1e-3'"),
    ("model.objectives", ["infonce", "triplet"], "model.objectives[1]: expected one of 'soft_haversine', 'infonce'"),
    ("index.recall_target", 1.5, "index.recall_target: expected a number > 0 and <= 1, got 1.5"),
    ("refresh_cron", "weekly", "refresh_cron: expected a cron expression of five fields"),
    ("regions", [], "regions: expected a non-empty list of mappings, got []"),
])
def test_wrong_types_and_values_name_the_key_on_one_line(path: str, value: object, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_set(TINY, path, value))
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_a_bad_spec_file_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_set(TINY, "balance.cap", "fifty")))
    for command in (["regions"], ["spec"]):
        done = subprocess.run([sys.executable, "-m", "geosolver_model.cli", "--spec", str(path), *command],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == f"geosolver: spec {path}: balance.cap: expected a positive integer, got 'fifty'"
        assert "Traceback" not in done.stderr


def test_the_spec_command_prints_every_key_with_its_default(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "geosolver_model.cli", "--spec", str(TINY_PATH), "spec"],
                          capture_output=True, text=True, timeout=120, check=True)
    printed = yaml.safe_load(done.stdout)
    assert printed["balance"]["cap"] == 3 and printed["sources"][0]["content_retries"] == 2
    assert parse_spec(printed) == parse_spec(TINY)  # what it prints is a valid spec, the same one


def test_missing_spec_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "nope.yaml")


def test_every_source_type_has_a_factory() -> None:
    from typing import get_args

    from geosolver_data.ingest.sources import FACTORIES
    from geosolver_data.spec import SourceType

    assert set(FACTORIES) == set(get_args(SourceType))


def test_every_objective_has_a_loss() -> None:
    from typing import get_args

    from geosolver_data.model_spec import Objective
    from geosolver_model.train.losses import LOSSES

    assert set(LOSSES) == set(get_args(Objective))


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.parametrize(("text", "message"), [
    (BILLION_LAUGHS.encode(), "expand to more than 100,000"),
    (b"name: a\nname: b\n", "duplicate key 'name'"),
    (b"name: caf\xe9\n", "not UTF-8 text (byte 9"),
    (b"a: &x [*x]\n", "recursive"),
])
def test_hostile_spec_files_fail_at_once_with_one_line(tmp_path: Path, text: bytes, message: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(text)
    with pytest.raises(SpecError, match=re.escape(message)) as info:
        load_spec(path)
    assert "\n" not in str(info.value)


def test_counts_have_upper_bounds() -> None:
    with pytest.raises(SpecError, match="workers"):
        parse_spec({**TINY, "workers": 100_000})


def test_aliases_a_person_writes_still_work(tmp_path: Path) -> None:
    text = TINY_PATH.read_text().replace("bbox: [-11.0, 35.0, 32.0, 61.0]", "bbox: &box [-11.0, 35.0, 32.0, 61.0]")
    text = text.replace("bbox: [-125.0, -40.0, -34.0, 50.0]", "bbox: *box")
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    assert [r.bbox for r in load_spec(path).regions] == [(-11.0, 35.0, 32.0, 61.0)] * 2


def test_splits_that_leave_out_val_or_test_must_say_so() -> None:
    with pytest.raises(SpecError, match="validation, test missing"):
        parse_spec({**TINY, "balance": {**TINY["balance"], "splits": {"train": 1.0}}})
    explicit = parse_spec({**TINY, "balance": {**TINY["balance"], "splits": {"train": 0.9, "val": 0.0, "test": 0.1}}})
    assert explicit.balance.splits["validation"] == 0.0  # `val`, the old name, read as `validation`
