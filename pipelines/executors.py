"""The executor, chosen by configuration: GEOSOLVER_EXECUTOR = multiprocess (default) | in_process | k8s | celery.

`multiprocess` runs each step in a process forked from a forkserver that has already imported the
code location, when the run's steps can run side by side. A run whose steps can only run one after
another (one region's ingest and its check, as `dagster asset materialize --select raw_images
--partition X` or the `ingest` job starts) runs them in the run's own process instead: processes
would buy no concurrency there, only their start-up. A forked step starts without paying again the
imports a fresh `spawn` costs (docs/operations.md has the measured figures). The `build` job's
forkserver also imports the model library (torch, transformers) once, when it is installed, so its
model steps and checks do not each pay those imports again; importing torch does not initialise CUDA,
which each step does for itself after the fork. Ingest runs never import torch. `max_concurrent` can
still be set in the run config.

k8s and celery need their Dagster integration installed (`pip install dagster-k8s` or
`dagster-celery`) and a cluster configured as their docs describe; nothing here replaces them.
"""

import importlib.util
import os
from collections.abc import Iterator

import dagster as dg

# Dagster's own executor classes (not re-exported at the top level; dagster is pinned <1.14).
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.executor.base import Executor
from dagster._core.executor.in_process import InProcessExecutor
from dagster._core.executor.multiprocess import MultiprocessExecutor

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


class ChainInProcess(Executor):
    """Steps in processes (the multiprocess executor it wraps) when two of them could run at once;
    otherwise every step in this process, one after another, as they would have run anyway."""

    def __init__(self, multiprocess: MultiprocessExecutor) -> None:
        self.multiprocess = multiprocess
        self.in_process = InProcessExecutor(retries=multiprocess.retries,
                                            step_dependency_config=multiprocess.step_dependency_config)

    @property
    def retries(self) -> RetryMode:
        return self.multiprocess.retries

    @property
    def step_dependency_config(self) -> StepDependencyConfig:
        return self.multiprocess.step_dependency_config

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator:
        levels = execution_plan.get_steps_to_execute_by_level()
        chosen = self.in_process if all(len(level) <= 1 for level in levels) else self.multiprocess
        return chosen.execute(plan_context, execution_plan)


def _forkserver(name: str, preload: list[str]) -> dg.ExecutorDefinition:
    @dg.executor(name=name, config_schema={"max_concurrent": dg.Field(int, is_required=False)},
                 requirements=dg.multiple_process_executor_requirements())
    def executor(init_context: dg.InitExecutorContext) -> Executor:
        return ChainInProcess(MultiprocessExecutor(
            retries=RetryMode.ENABLED, max_concurrent=init_context.executor_config.get("max_concurrent"),
            start_method="forkserver", explicit_forkserver_preload=preload))

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
