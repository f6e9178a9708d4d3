"""The executor, chosen by configuration: GEOSOLVER_EXECUTOR = multiprocess (default) | in_process | k8s | celery.

`multiprocess` runs each step in a process forked from a forkserver that has already imported the
code location, so a step starts in well under a second instead of paying the ~5 s of imports a fresh
`spawn` costs (the data stages of the tiny spec: 19 s instead of 38 s end to end). Nothing heavy
(torch, CUDA) is imported before the fork. `max_concurrent` can still be set in the run config.

k8s and celery need their Dagster integration installed (`pip install dagster-k8s` or
`dagster-celery`) and a cluster configured as their docs describe; nothing here replaces them.
"""

import os

import dagster as dg

EXECUTOR_ENV = "GEOSOLVER_EXECUTOR"
CHOICES = ("multiprocess", "in_process", "k8s", "celery")


def _integration(module: str, attribute: str, package: str) -> dg.ExecutorDefinition:
    try:
        return getattr(__import__(module, fromlist=[attribute]), attribute)
    except ImportError as exc:
        raise dg.DagsterInvalidConfigError(
            f"{EXECUTOR_ENV}={os.environ.get(EXECUTOR_ENV)} needs the {package} package: pip install {package}",
            [], None) from exc


PRELOAD = ["pipelines.definitions"]


@dg.configured(dg.multiprocess_executor, config_schema={"max_concurrent": dg.Field(int, is_required=False)})
def forkserver_executor(config: dict) -> dict:
    return {"start_method": {"forkserver": {"preload_modules": PRELOAD}}, **config}


def executor_from_env() -> dg.ExecutorDefinition:
    name = os.environ.get(EXECUTOR_ENV, "multiprocess") or "multiprocess"
    if name == "multiprocess":
        return forkserver_executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "k8s":
        return _integration("dagster_k8s", "k8s_job_executor", "dagster-k8s")
    if name == "celery":
        return _integration("dagster_celery", "celery_executor", "dagster-celery")
    raise ValueError(f"{EXECUTOR_ENV}={name!r}: expected one of {list(CHOICES)}")
