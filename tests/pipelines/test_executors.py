import os
from pathlib import Path

import dagster as dg
import pytest

from pipelines.executors import build_executor, executor_from_env, forkserver_executor, ingest_executor


@pytest.mark.parametrize(("value", "expected"), [
    (None, forkserver_executor), ("", forkserver_executor), ("in_process", dg.in_process_executor),
])
def test_executor_follows_the_environment(monkeypatch: pytest.MonkeyPatch, value: str | None, expected) -> None:
    if value is None:
        monkeypatch.delenv("GEOSOLVER_EXECUTOR", raising=False)
    else:
        monkeypatch.setenv("GEOSOLVER_EXECUTOR", value)
    assert executor_from_env() is expected


def test_cluster_executors_without_their_package_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSOLVER_EXECUTOR", "k8s")
    try:
        import dagster_k8s  # noqa: F401
    except ImportError:
        with pytest.raises(dg.DagsterInvalidConfigError, match="pip install dagster-k8s"):
            executor_from_env()
    monkeypatch.setenv("GEOSOLVER_EXECUTOR", "slurm")
    with pytest.raises(ValueError, match="expected one of"):
        executor_from_env()


def test_the_build_job_preloads_the_model_library_and_ingest_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.definitions import defs

    monkeypatch.delenv("GEOSOLVER_EXECUTOR", raising=False)
    assert build_executor().name == "forkserver_model_executor"
    assert defs.resolve_job_def("build").executor_def.name == "forkserver_model_executor"
    assert defs.resolve_job_def("ingest").executor_def is dg.in_process_executor  # ingest never imports torch
    monkeypatch.setenv("GEOSOLVER_EXECUTOR", "in_process")
    assert build_executor() is None  # another executor chosen: the build job follows it
    monkeypatch.setenv("GEOSOLVER_EXECUTOR", "k8s")
    assert ingest_executor() is None  # a pod per step there, ingest included


@dg.op
def where(_context: dg.OpExecutionContext) -> int:
    return os.getpid()


@dg.op
def where_after(_context: dg.OpExecutionContext, _before: int) -> int:
    return os.getpid()


@dg.job(executor_def=dg.in_process_executor)
def chain() -> None:
    where_after(where())


@dg.job(executor_def=forkserver_executor)
def side_by_side() -> None:
    where.alias("left")()
    where.alias("right")()


def _step_pids(job: dg.JobDefinition, tmp_path: Path, run_config: dict | None = None) -> set[int]:
    tmp_path.mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance, \
            dg.execute_job(dg.reconstructable(job), instance, run_config=run_config) as result:
        assert result.success
        return {result.output_for_node(node.name) for node in job.nodes}


def test_ingest_steps_run_in_the_run_process_and_build_steps_in_forked_ones(tmp_path: Path) -> None:
    assert ingest_executor() is chain.executor_def
    assert _step_pids(chain, tmp_path / "chain") == {os.getpid()}  # no process start-up for a chain
    pids = _step_pids(side_by_side, tmp_path / "side")
    assert len(pids) == 2 and os.getpid() not in pids  # forked from the forkserver, one per step
    one_at_a_time = {"execution": {"config": {"max_concurrent": 1}}}
    assert os.getpid() not in _step_pids(side_by_side, tmp_path / "capped", one_at_a_time)
