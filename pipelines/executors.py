"""The executor, chosen by configuration: GEOSOLVER_EXECUTOR = multiprocess (default) | in_process | k8s | celery.

`multiprocess` runs each step in a process forked from a forkserver that has already imported the
code location, so a step starts in well under a second instead of paying the ~5 s of imports a fresh
`spawn` costs (the data stages of the tiny spec: 19 s instead of 38 s end to end). The `build` job's
forkserver also imports the model library (torch, transformers) once, when it is installed, so its
model steps and checks do not each pay those imports again; importing torch does not initialise CUDA,
which each step does for itself after the fork. Ingest runs never import torch. `max_concurrent` can
still be set in the run config.

k8s and celery need their Dagster integration installed (`pip install dagster-k8s` or
`dagster-celery`) and a cluster configured as their docs describe; nothing here replaces them.
"""

import importlib.util
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
MODEL_PRELOAD = "geosolver_model.stages"


def _forkserver(name: str, preload: list[str]) -> dg.ExecutorDefinition:
    @dg.configured(dg.multiprocess_executor, name=name,
                   config_schema={"max_concurrent": dg.Field(int, is_required=False)})
    def executor(config: dict) -> dict:
        return {"start_method": {"forkserver": {"preload_modules": preload}}, **config}

    return executor


forkserver_executor = _forkserver("forkserver_executor", PRELOAD)


def build_executor() -> dg.ExecutorDefinition | None:
    """The `build` job's executor: the default one with the model library preloaded too; None (the
    definitions' executor) when another executor is chosen or torch is not installed."""
    if (os.environ.get(EXECUTOR_ENV) or "multiprocess") != "multiprocess" or importlib.util.find_spec("torch") is None:
        return None
    return _forkserver("forkserver_model_executor", [*PRELOAD, MODEL_PRELOAD])


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
