"""`geosolver push` and the `publish:` assets against the loopback Hub: a dataset version as one commit,
no new commit for the same version, a stock `datasets.load_dataset(<repo>)` reading it back through the
Hub's redirect to its file host, private repos, and a token that is never written or printed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from geosolver_data import stages
from geosolver_data.spec import load_spec
from geosolver_data.store.home import DatasetLayout
from tests.conftest import TINY_SPEC
from tests.fakes.hub import FakeHub
from tests.fakes.server import LoopbackServer

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.long


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(home, version) of the tiny dataset, built once for this file."""
    home = tmp_path_factory.mktemp("push") / "home"
    spec = load_spec(TINY_SPEC)
    return home, stages.build_dataset(spec, DatasetLayout(home, spec.name), log=lambda _: None).version


@pytest.fixture
def hub(tmp_path: Path):
    fake = FakeHub()
    with LoopbackServer(fake.app(), hosts=("127.0.0.2",)) as server:
        fake.cdn = server.urls[1]
        env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": fake.token,
               # The loopback Hub speaks the LFS "basic" transfer; the real Hub takes Xet uploads through hf_xet.
               "HF_HUB_DISABLE_XET": "1"}
        yield fake, env


def _geosolver(env: dict[str, str], home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "geosolver"), "--home", str(home), "--spec", str(TINY_SPEC), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_push_twice_makes_one_commit_and_load_dataset_reads_it(built, hub) -> None:
    home, version = built
    fake, env = hub
    first = _geosolver(env, home, "push", "dataset", "--repo", "me/tiny-streets", "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    pushed = json.loads(first.stdout)
    assert pushed["new_commit"] and pushed["version"] == version
    again = _geosolver(env, home, "push", "dataset", "--repo", "me/tiny-streets")
    assert again.returncode == 0 and "no new commit" in again.stdout, again.stderr[-2000:]
    assert [(c[1], c[2]) for c in fake.commits] == [("me/tiny-streets", f"dataset tiny version {version}")]
    folder = home / "datasets" / "tiny" / version
    on_hub = fake.repos[("dataset", "me/tiny-streets")][fake.refs[("dataset", "me/tiny-streets")]["main"]]
    mine = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert {k: v for k, v in on_hub.items() if k != ".gitattributes"} == mine
    for output in (first, again):
        assert fake.token not in output.stdout + output.stderr

    reader = ("from datasets import load_dataset; ds = load_dataset('me/tiny-streets'); row = ds['train'][0]; "
              "print(ds.num_rows['train'], ds.num_rows['validation'], ds.num_rows['test'], row['image'].size)")
    loaded = subprocess.run([sys.executable, "-c", reader], env={k: v for k, v in env.items() if k != "HF_TOKEN"},
                            capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    splits = json.loads((folder / "manifest.json").read_text())["splits"]
    train, validation, test, size = loaded.stdout.split(maxsplit=3)
    assert (int(train), int(validation), int(test)) == (splits["train"], splits["validation"], splits["test"])
    assert size.strip().startswith("(") and fake.cdn_gets > 0  # decoded images, read through the file host


def test_a_private_push_and_the_errors_are_one_line(built, hub) -> None:
    home, _ = built
    fake, env = hub
    done = _geosolver(env, home, "push", "dataset", "--repo", "me/secret", "--private")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "me/secret" in fake.private
    anonymous = {k: v for k, v in env.items() if k != "HF_TOKEN"}
    refused = _geosolver(anonymous, home, "push", "dataset", "--repo", "me/other")
    assert refused.returncode == 1 and "me/other" in refused.stderr and "HF_TOKEN" in refused.stderr
    assert "Traceback" not in refused.stderr
    fake.refuse_uploads = True
    failed = _geosolver(env, home, "push", "dataset", "--repo", "me/refused")
    assert failed.returncode == 1 and "me/refused" in failed.stderr and "Traceback" not in failed.stderr
    assert [c for c in fake.commits if c[1] == "me/refused"] == []
    missing = _geosolver(env, home, "push", "dataset", "--repo", "me/x", "--version", "0123456789abcdef")
    assert missing.returncode == 1 and "0123456789abcdef" in missing.stderr and "Traceback" not in missing.stderr
    for path in home.rglob("*"):
        assert not path.is_file() or fake.token.encode() not in path.read_bytes(), path


def test_the_publish_section_adds_an_asset_that_pushes_each_new_version(built, hub, tmp_path: Path) -> None:
    home, version = built
    fake, env = hub
    spec = yaml.safe_load(TINY_SPEC.read_text())
    spec["publish"] = {"dataset": {"repo": "me/tiny-auto"}}
    spec_file = tmp_path / "publish.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home)
    run_env = {**env, "GEOSOLVER_SPEC": str(spec_file), "GEOSOLVER_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}
    for _ in range(2):
        done = subprocess.run([str(BIN / "dagster"), "asset", "materialize", "-m", "pipelines.definitions",
                               "--select", "hub_dataset"], cwd=ROOT, env=run_env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0 and "RUN_SUCCESS" in done.stderr, done.stderr[-3000:]
    assert [(c[1], c[2]) for c in fake.commits] == [("me/tiny-auto", f"dataset tiny version {version}")]
    assert "already on the Hub, no commit" in done.stderr
    shards = sorted(p for p in fake.repos[("dataset", "me/tiny-auto")][fake.commits[0][3]] if p.startswith("shards/"))
    assert shards and all(pq.read_schema(home / "datasets" / "tiny" / version / s) for s in shards)
