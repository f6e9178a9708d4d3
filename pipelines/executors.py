"""The executor, chosen by configuration: GEOSOLVER_EXECUTOR = multiprocess (default) | in_process | k8s | celery.

All of them are Dagster's own executors, configured through their public config. `multiprocess` is
Dagster's multiprocess executor with the `forkserver` start method and the code location preloaded:
each step is forked from a process that has already imported it, instead of paying a fresh
interpreter's imports (`spawn`). The `build` job's forkserver also preloads the model library (torch,
transformers) when it is installed, so its model steps and checks do not each import them again;
importing torch does not initialise CUDA, which each step does for itself after the fork. The
`ingest` job, whose steps (one region's ingest, then its check) can only run one after another, runs
them in the run's own process: processes would buy it no concurrency, only their start-up. Ingest
runs never import torch. `max_concurrent` can still be set in the run config.

k8s and celery need their Dagster integration installed (`pip install dagster-k8s` or
`dagster-celery`) and a cluster configured as their docs describe; nothing here replaces them.
"""

import importlib.util
import os

import dagster as dg

EXECUTOR_ENV = "GEOSOLVER_EXECUTOR"
CHOICES = ("multiprocess", "in_process", "k8s", "celery")
PRELOAD = ["pipelines.definitions"]
MODEL_PRELOAD = "geosolver_model.stages"


def _integration(module: str, attribute: str, package: str) -> dg.ExecutorDefinition:
    try:
        return getattr(__import__(module, fromlist=[attribute]), attribute)
    except ImportError as exc:
        raise dg.DagsterInvalidConfigError(
            f"{EXECUTOR_ENV}={os.environ.get(EXECUTOR_ENV)} needs the {package} package: pip install {package}",
            [], None) from exc


def _forkserver(name: str, preload: list[str]) -> dg.ExecutorDefinition:
    """Dagster's multiprocess executor, its steps forked from a forkserver that preloaded `preload`."""

    def config(run_config: dict) -> dict:
        chosen = {"start_method": {"forkserver": {"preload_modules": preload}}}
        if run_config.get("max_concurrent") is not None:
            chosen["max_concurrent"] = run_config["max_concurrent"]
        return chosen

    return dg.multiprocess_executor.configured(
        config, name=name, config_schema={"max_concurrent": dg.Field(int, is_required=False)})


forkserver_executor = _forkserver("forkserver_executor", PRELOAD)


def _chosen() -> str:
    return os.environ.get(EXECUTOR_ENV) or "multiprocess"


def build_executor() -> dg.ExecutorDefinition | None:
    """The `build` job's executor: the default one with the model library preloaded too; None (the
    definitions' executor) when another executor is chosen or torch is not installed."""
    if _chosen() != "multiprocess" or importlib.util.find_spec("torch") is None:
        return None
    return _forkserver("forkserver_model_executor", [*PRELOAD, MODEL_PRELOAD])


def ingest_executor() -> dg.ExecutorDefinition | None:
    """The `ingest` job's executor: in the run's process when the default executor is chosen (its steps
    run one after another anyway); None (the definitions' executor, e.g. a pod per step) otherwise."""
    return dg.in_process_executor if _chosen() == "multiprocess" else None


def executor_from_env() -> dg.ExecutorDefinition:
    name = _chosen()
    if name == "multiprocess":
        return forkserver_executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "k8s":
        return _integration("dagster_k8s", "k8s_job_executor", "dagster-k8s")
    if name == "celery":
        return _integration("dagster_celery", "celery_executor", "dagster-celery")
    raise ValueError(f"{EXECUTOR_ENV}={name!r}: expected one of {list(CHOICES)}")
