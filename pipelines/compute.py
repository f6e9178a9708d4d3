"""The spec's `compute:` section as the tags Dagster's cluster executors read, on the model steps only:
`dagster-k8s/config` (the step pod's GPU and memory requests, node selector, tolerations, image) for
`k8s_job_executor`, and `dagster-celery/queue` for `celery_executor`. Ingest and dataset steps get
none, so they never wait for (or hold) a GPU node."""

from __future__ import annotations

from geosolver_data.model_spec import ComputeConfig

K8S_CONFIG = "dagster-k8s/config"
CELERY_QUEUE = "dagster-celery/queue"


def model_step_tags(compute: ComputeConfig) -> dict[str, object]:
    """The op tags of a step that runs the model; empty when the spec asks for nothing."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if compute.gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(compute.gpus)  # GPUs: request = limit
    if compute.memory:
        requests["memory"] = limits["memory"] = compute.memory
    if compute.cpu:
        requests["cpu"] = compute.cpu
    container: dict[str, object] = {}
    if requests:
        container["resources"] = {"requests": requests, "limits": limits} if limits else {"requests": requests}
    if compute.image:
        container["image"] = compute.image
    pod: dict[str, object] = {}
    if compute.node_selector:
        pod["node_selector"] = dict(compute.node_selector)
    if compute.tolerations:
        pod["tolerations"] = [{k: v for k, v in t.model_dump().items() if v} for t in compute.tolerations]
    tags: dict[str, object] = {}
    if container or pod:
        tags[K8S_CONFIG] = {"container_config": container, "pod_spec_config": pod}
    if compute.gpus and compute.celery_queue:
        tags[CELERY_QUEUE] = compute.celery_queue
    return tags
