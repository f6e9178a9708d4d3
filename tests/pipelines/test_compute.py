"""The spec's `compute:` section reaches the cluster executors on exactly the model steps: the Kubernetes
Job each step would get is built offline with dagster-k8s' own functions, as its executor builds it."""

from __future__ import annotations

import pytest
import yaml

from geosolver_data.model_spec import Spec, parse_spec
from geosolver_data.spec import default_spec_path
from pipelines.assets import GRAPH, dataset_assets
from pipelines.partitions import ingest_partitions
from pipelines.scope import DEFAULT, INDEX, MODEL

k8s = pytest.importorskip("dagster_k8s.job")

GPU_POOL = {"gpus": 2, "memory": "64Gi", "cpu": "8", "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
            "tolerations": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}], "image": "registry.example.org/gs:cuda"}


def _spec(**extra: object) -> Spec:
    return parse_spec({**yaml.safe_load(default_spec_path().read_text()), **extra})


def _step_job(tags: dict):
    """The Job k8s_job_executor would launch for a step with these op tags."""
    config = k8s.DagsterK8sJobConfig(job_image="registry.example.org/gs:latest", dagster_home="/opt/dagster/home",
                                     instance_config_map="dagster-instance")
    return k8s.construct_dagster_k8s_job(config, ["dagster", "api", "execute_step"], "dagster-step-test",
                                         k8s.get_user_defined_k8s_config(tags), component="step_worker")


def test_model_steps_request_the_gpu_pool_and_ingest_steps_request_nothing() -> None:
    spec = _spec(compute=GPU_POOL)
    built = dataset_assets(DEFAULT, ingest_partitions(spec), spec.compute)
    for name, _, _, group, _ in GRAPH:
        pod = _step_job(getattr(built, name).op.tags).spec.template.spec
        container = pod.containers[0]
        limits = (container.resources.limits if container.resources else None) or {}
        if group in (MODEL, INDEX):
            assert limits == {"nvidia.com/gpu": "2", "memory": "64Gi"}, name
            assert container.resources.requests == {"nvidia.com/gpu": "2", "memory": "64Gi", "cpu": "8"}
            assert pod.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
            assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [
                ("nvidia.com/gpu", "Exists", "NoSchedule")]
            assert container.image == "registry.example.org/gs:cuda"
            assert getattr(built, name).op.tags["dagster-celery/queue"] == "gpu"
        else:  # raw_images and the dataset steps: no GPU, no node pool, the deployment's image
            assert "nvidia.com/gpu" not in limits and not pod.node_selector and not pod.tolerations, name
            assert container.image == "registry.example.org/gs:latest"
            assert "dagster-celery/queue" not in getattr(built, name).op.tags


def test_the_default_spec_tags_nothing_and_training_follows_the_gpus() -> None:
    spec = _spec()
    built = dataset_assets(DEFAULT, ingest_partitions(spec), spec.compute)
    assert all(not getattr(built, name).op.tags for name, *_ in GRAPH)
    assert spec.model.nproc is None and spec.training_processes == 1
    assert _spec(compute={"gpus": 4}).training_processes == 4  # one torchrun process per GPU of the step
    raw = yaml.safe_load(default_spec_path().read_text())
    assert _spec(compute={"gpus": 4}, model={**raw["model"], "nproc": 2}).training_processes == 2


def test_the_model_version_counts_the_training_processes() -> None:
    from geosolver_model import stages

    spec = _spec(compute=GPU_POOL)  # 2 GPUs: two torchrun processes, so another effective batch
    assert stages.model_version(spec, "v1") != stages.model_version(_spec(), "v1")
    same = _spec(compute={"gpus": 1}, model={**spec.model.model_dump(mode="json"), "nproc": 2})
    assert stages.model_version(spec, "v1") == stages.model_version(same, "v1")
