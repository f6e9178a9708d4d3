from pathlib import Path

import pytest
import yaml

from geosolver_data.spec import SpecError, default_spec_path, load_spec, parse_spec

TINY = yaml.safe_load((Path(__file__).parents[1] / "specs" / "tiny.yaml").read_text())


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
    ({"balance": {"resolution": 3, "split_resolution": 3}}, "coarser"),
    ({"balance": {"splits": {"train": 0.5, "val": 0.1}}}, "summing to 1"),
    ({"dedup": {"phash_threshold": 40}}, "0..16"),
    ({"image": {"max_sides": 10}}, "unknown key"),
])
def test_bad_specs_fail_with_a_message_naming_the_problem(change: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec({**TINY, **change})


def test_missing_spec_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "nope.yaml")
