"""An ingest-only deployment (requirements.txt alone, no `model` extra) loads the code location and
runs the data assets: torch, transformers and faiss are made unimportable in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY_SPEC

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys
for name in ("torch", "transformers", "faiss", "safetensors"):
    sys.modules[name] = None  # `import torch` now raises ImportError, as on a machine without it
import dagster as dg
from pipelines.definitions import defs
job = defs.resolve_implicit_global_asset_job_def()
instance = dg.DagsterInstance.ephemeral()
results = [job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("raw_images")], partition_key=r)
           for r in ("europe", "americas")]
data = [dg.AssetKey(n) for n in ("deduplicated_images", "geocells", "balanced_dataset", "dataset_shards")]
results.append(job.execute_in_process(instance=instance, asset_selection=data))
assert all(r.success for r in results)
print("checks passed:", sum(e.passed for r in results for e in r.get_asset_check_evaluations()))
print("model stack imported:", any(sys.modules.get(n) for n in ("torch", "transformers", "faiss")))
print("model package imported:", any(n.startswith("geosolver_model") for n in sys.modules))
"""


def test_the_data_assets_run_without_the_model_stack(tmp_path: Path) -> None:
    env = {**os.environ, "GEOSOLVER_HOME": str(tmp_path / "home"), "GEOSOLVER_SPEC": str(TINY_SPEC),
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "checks passed: 8" in done.stdout  # the six shard checks and each region's accounting check
    assert "model stack imported: False" in done.stdout
    assert "model package imported: False" in done.stdout  # the spec, model sections included, is read below it
