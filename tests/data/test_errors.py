"""One error base carries the exit code, and the CLI catches it once: one line on stderr, no traceback."""

from __future__ import annotations

import argparse

import pytest

from geosolver_data import cli
from geosolver_data.errors import GeosolverError
from geosolver_data.ingest.accounting import AccountingError
from geosolver_data.ingest.engine import WorkerCrashed
from geosolver_data.ingest.sources.base import SourceError
from geosolver_data.spec import SpecError
from geosolver_data.store.artifact import ArtifactDamaged, ArtifactMissing


@pytest.mark.parametrize(("error", "code"), [
    (SpecError("regions[0].bbox: expected 4 numbers"), 2), (ArtifactMissing("no model version"), 1),
    (ArtifactDamaged("a shard is missing"), 1), (SourceError("Mapillary refused the token"), 1),
    (AccountingError("3 candidates unaccounted for"), 1), (WorkerCrashed("worker 2 died"), 1),
])
def test_the_cli_exits_with_the_errors_code_and_its_one_line(error: GeosolverError, code: int,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    def fail(_args: argparse.Namespace) -> None:
        raise error

    with pytest.raises(SystemExit) as exited:
        cli.run(argparse.Namespace(func=fail))
    assert exited.value.code == code
    assert capsys.readouterr().err == f"geosolver: {error}\n"


def test_a_bug_keeps_its_traceback() -> None:
    def bug(_args: argparse.Namespace) -> None:
        raise KeyError("not a user's error")

    with pytest.raises(KeyError):
        cli.run(argparse.Namespace(func=bug))
