"""Bytes a remote home (`GEOSOLVER_HOME=s3://…`) moves per step, each step on a fresh pod (issue #14).

Against moto's S3 server on loopback, with the demo spec (or --spec): each region is ingested by its
own pod (an empty working copy), then the dataset build by another, then a refresh of the first
region by yet another, exactly as the Dagster resource does it (GeosolverResource: pull, run the
stage, push; here without Dagster so the mirror's counters can be read). For each step it prints the
bytes and files pulled and pushed, and beside it what the same pod would have pulled before ingest
pulled only its own region's files and the build skipped what only ingest reads: the whole home (a
pull with no prefix, what every step did then), measured on another empty working copy at the same
moment.

Run from the repo root: .venv/bin/python -m bench.bench_remote_home [--spec geosolver_data/specs/demo.yaml]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.bench_fetch import emit, free_port
from geosolver_data import stages
from geosolver_data.spec import DatasetSpec, load_spec
from geosolver_data.store.home import DatasetLayout
from geosolver_data.store.mirror import Mirror


def pod(uri: str, cache: Path) -> Mirror:
    """A fresh machine: an empty working copy."""
    os.environ["GEOSOLVER_CACHE"] = str(cache)
    return Mirror(uri)


def step(uri: str, cache: Path, name: str, prefixes: tuple[str, ...], work: Callable[[DatasetLayout], object],
         spec: DatasetSpec, skip: tuple[str, ...] = ()) -> dict:
    mirror = pod(uri, cache)
    pulled = mirror.pull(prefixes, skip)
    work(DatasetLayout(mirror.local, spec.name))
    pushed = mirror.push()
    figures = {"files_pulled": pulled, "mb_pulled": round(mirror.bytes_pulled / 1e6, 2),
               "files_pushed": pushed, "mb_pushed": round(mirror.bytes_pushed / 1e6, 2)}
    emit(bench="remote_home_step", step=name, **figures)
    return figures


def whole_home_pull(uri: str, cache: Path) -> float:
    mirror = pod(uri, cache)
    mirror.pull()
    return mirror.bytes_pulled / 1e6


def build(spec: DatasetSpec, layout: DatasetLayout) -> None:
    """Everything after ingest, as the `build` job's dataset steps run it."""
    stages.deduplicate_dataset(spec, layout)
    stages.assign_cells(spec, layout)
    stages.balance_dataset(spec, layout)
    stages.publish(spec, layout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=None, help="default: the bundled demo spec")
    args = parser.parse_args()
    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    spec = load_spec(args.spec)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    s3fs.S3FileSystem().mkdir("bench")
    uri = "s3://bench/home"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            units = spec.ingest_units()
            for n, unit in enumerate([*units, units[0]]):
                refresh = n == len(units)
                before = whole_home_pull(uri, root / f"before-{n}")
                reads = tuple(DatasetLayout(Path("/"), spec.name).ingest_reads(unit, spec.sources))
                name = f"{'refresh' if refresh else 'ingest'} {unit.name}"
                after = step(uri, root / f"pod-{n}", name, reads, lambda layout, u=unit: stages.ingest_region(
                    spec, layout, u.region, log=lambda _: None, part=u.part), spec)
                emit(bench="remote_home_ingest_pull", step=name, mb_before_whole_home=round(before, 2),
                     mb_after_own_region=after["mb_pulled"])
                if n == len(units) - 1:
                    skip = tuple(DatasetLayout(Path("/"), spec.name).ingest_only())
                    before = whole_home_pull(uri, root / "before-build")
                    after = step(uri, root / "build", "dataset build", (), lambda layout: build(spec, layout), spec,
                                 skip)
                    emit(bench="remote_home_build_pull", mb_before_whole_home=round(before, 2),
                         mb_after_without_ingest_only=after["mb_pulled"])
    finally:
        server.stop()


if __name__ == "__main__":
    main()
