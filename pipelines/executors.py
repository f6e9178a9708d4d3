"""The executor, chosen by configuration: GEOSOLVER_EXECUTOR = multiprocess (default) | in_process | k8s | celery.

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


def executor_from_env() -> dg.ExecutorDefinition:
    name = os.environ.get(EXECUTOR_ENV, "multiprocess") or "multiprocess"
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "k8s":
        return _integration("dagster_k8s", "k8s_job_executor", "dagster-k8s")
    if name == "celery":
        return _integration("dagster_celery", "celery_executor", "dagster-celery")
    raise ValueError(f"{EXECUTOR_ENV}={name!r}: expected one of {list(CHOICES)}")
