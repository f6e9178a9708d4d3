"""Ingest against an image host as badly behaved as the real internet: one run accounts for every
listed image, later runs retry exactly what was marked for retry, and a run that cannot account for
its images fails loudly instead of reporting success with fewer rows."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from geosolver_data.ingest import engine
from geosolver_data.ingest.accounting import AccountingError
from geosolver_data.ingest.engine import WorkerCrashed
from geosolver_data.ingest.outcomes import REFRESH
from geosolver_data.spec import DatasetSpec
from geosolver_data.stages import ingest_region
from geosolver_data.store.home import DatasetLayout
from tests.data.test_remote_sources import NORTH, remote_spec
from tests.fakes.imagery import FakeImage

# What each fault ends as when it lasts: the reason, and whether a later run tries again.
LASTING = {
    "garbage_jpeg": "undecodable", "garbage_png": "undecodable", "garbage_webp": "undecodable",
    "cut_header": "undecodable", "login_page": "not_an_image", "html_as_jpeg": "not_an_image",
    "reset": "truncated", "truncated": "truncated", "trickle": "timeout", "timeout": "timeout",
    "500_forever": "http_500", "429_bare": "http_429", "not_found": "http_404",
}
HICCUPS = ("slow", "429_then_ok", "500_then_ok")  # served within the run
CONTENT_RETRIES = 2


def hostile_world(n: int, share: float, seed: int) -> list[FakeImage]:
    """n images in the north box; a `share` of them misbehave, some for ever, some for a few requests."""
    rng = random.Random(seed)
    images = []
    for i in range(n):
        image = FakeImage(str(100_000 + i), rng.uniform(NORTH[1] + 1e-4, NORTH[3] - 1e-4),
                          rng.uniform(NORTH[0] + 1e-4, NORTH[2] - 1e-4), captured_at_ms=1_600_000_000_000 + i,
                          sequence=f"s{i % 40}", creator=f"user{i % 7}")
        if rng.random() < share:
            image.fault = rng.choice([*LASTING, *HICCUPS])
            if image.fault in LASTING and image.fault != "not_found":
                image.fault_requests = rng.choice([None, None, 1, 3, 4])  # None: for ever
        images.append(image)
    return images


def hostile_spec(**source: object) -> DatasetSpec:
    return remote_spec({"type": "mapillary", "content_retries": CONTENT_RETRIES, **source},
                       workers=2)


def tables(layout: DatasetLayout) -> tuple[dict[str, dict], dict[str, dict]]:
    raw = pq.read_table(layout.raw_images("north", "mapillary"), columns=["image_id", "sha256"]).to_pylist()
    rejects = pq.read_table(layout.raw_rejects("north", "mapillary")).to_pylist()
    stored = {r["image_id"]: r for r in raw}
    rejected = {r["image_id"]: r for r in rejects}
    assert len(stored) == len(raw) and len(rejected) == len(rejects), "an id twice in one table"
    assert not set(stored) & set(rejected), "an id in both tables"
    return stored, rejected


@pytest.mark.parametrize("share", [0.1, 0.3])
def test_one_run_accounts_for_every_image(mapillary, home: Path, share: float) -> None:
    imagery, _ = mapillary
    imagery.add(*hostile_world(1000, share, seed=int(share * 100)))
    spec = hostile_spec()
    layout = DatasetLayout(home, spec.name)
    stats = ingest_region(spec, layout, "north", log=lambda _: None)["mapillary"]

    stored, rejected = tables(layout)
    everyone = {f"mapillary:{i}" for i in imagery.images}
    assert set(stored) | set(rejected) == everyone  # every id once, in one table
    assert all(r["reason"] and r["attempts"] == 1 for r in rejected.values())
    acc = stats.accounting
    assert acc is not None and acc.holds and acc.listed == len(everyone) == acc.stored + acc.rejected + acc.to_retry
    assert acc.to_retry == sum(not r["final"] for r in rejected.values()) > 0
    for image in imagery.images.values():
        key = f"mapillary:{image.id}"
        if image.fault in HICCUPS or image.fault_requests == 1:  # one bad answer: the run's retries cover it
            assert key in stored, (image.fault, image.fault_requests, rejected.get(key))
        elif image.fault in LASTING and image.fault_requests is None:
            assert rejected[key]["reason"] == LASTING[image.fault], image.fault
            # unusable bytes and busy hosts get another chance; a 404 is final at once
            assert rejected[key]["final"] == (image.fault == "not_found"), image.fault


def test_later_runs_retry_only_what_is_marked_and_then_store_all_the_host_serves(mapillary, home: Path) -> None:
    imagery, _ = mapillary
    imagery.add(*hostile_world(1000, 0.1, seed=7))
    spec = hostile_spec()
    layout = DatasetLayout(home, spec.name)
    ingest_region(spec, layout, "north", log=lambda _: None)
    for run in range(2, 2 + CONTENT_RETRIES):
        _, rejected = tables(layout)
        marked = {k.split(":")[1] for k, r in rejected.items() if not r["final"]}
        before = dict(imagery.hits)
        ingest_region(spec, layout, "north", log=lambda _: None)
        asked = {i for i, n in imagery.hits.items() if n > before.get(i, 0)}
        assert asked == marked, f"run {run} fetched what was not marked for retry"

    stored, rejected = tables(layout)
    assert {k.split(":")[1] for k in stored} == imagery.servable()
    for key, row in rejected.items():
        fault = imagery.images[key.split(":")[1]].fault
        network = LASTING[fault].startswith(("http_5", "http_429", "timeout"))
        # unusable bytes are final once the content retries are spent; busy hosts are always retried
        assert row["final"] != network and row["attempts"] == (1 if fault == "not_found" else 1 + CONTENT_RETRIES)


def test_a_run_that_loses_an_image_fails_naming_it(mapillary, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    imagery, _ = mapillary
    imagery.add(*hostile_world(60, 0.0, seed=1))
    spec = remote_spec({"type": "mapillary"})  # one worker: the batches run in this process
    real = engine.work_batch
    lost: list[str] = []

    def losing(batch, drain=False):  # a bug that drops one outcome
        results, retries = real(batch, drain)
        if results and not lost:
            lost.append(results.pop()[0])
        return results, retries

    monkeypatch.setattr(engine, "work_batch", losing)
    with pytest.raises(AccountingError, match="in neither raw_images nor the rejects") as info:
        ingest_region(spec, DatasetLayout(home, spec.name), "north", log=lambda _: None)
    assert lost[0] in str(info.value)


def test_outcomes_returned_beside_an_expired_url_survive_a_drain_during_its_refresh(
        mapillary, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call's results are taken off the worker's books before any of them waits: while one expired
    URL is being refreshed, a draining call to the same worker must not drop the other outcomes that
    came back in the same reply (a KeyError once, late in a run, when the timing lined up)."""
    imagery, _ = mapillary
    imagery.add(*[FakeImage(str(5000 + i), 50.05 + i * 0.002, 10.05, fault="expired" if i % 3 == 0 else None)
                  for i in range(40)])
    spec = remote_spec({"type": "mapillary"})  # one worker: the batches run in this process
    real_batch, real_refresh = engine.work_batch, engine._Run.refresh

    def refresh_first(batch, drain=False):  # outcomes come back in any order; put the expired ones first
        results, retries = real_batch(batch, drain)
        return sorted(results, key=lambda r: r[1] != REFRESH), retries

    async def drained_meanwhile(self, candidate):
        # What the drain loop may do while a refresh waits on the API: a draining call to the worker.
        await self.call(0, [], drain=True)
        await real_refresh(self, candidate)

    monkeypatch.setattr(engine, "work_batch", refresh_first)
    monkeypatch.setattr(engine._Run, "refresh", drained_meanwhile)
    stats = ingest_region(spec, DatasetLayout(home, spec.name), "north", log=lambda _: None)["mapillary"]
    assert stats.accounting.holds and stats.accounting.stored == 40


def test_a_batch_that_fails_fails_the_run_and_the_rerun_resumes(mapillary, home: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    imagery, _ = mapillary
    imagery.add(*hostile_world(80, 0.0, seed=2))
    spec = remote_spec({"type": "mapillary", "concurrency": 2})
    layout = DatasetLayout(home, spec.name)
    real, returned = engine.work_batch, []

    def failing(batch, drain=False):  # not about one image: e.g. the disk under the worker went away
        if returned:
            raise OSError(28, "No space left on device")
        results, retries = real(batch, drain)
        returned.extend(results)
        return results, retries

    monkeypatch.setattr(engine, "work_batch", failing)
    with pytest.raises(OSError, match="No space left"):
        ingest_region(spec, layout, "north", log=lambda _: None)
    assert not layout.raw_images("north", "mapillary").exists()  # no success with fewer rows
    monkeypatch.setattr(engine, "work_batch", real)
    stats = ingest_region(spec, layout, "north", log=lambda _: None)["mapillary"]
    assert stats.already_done == len(returned) > 0  # what was finished before the failure is kept
    assert stats.accounting.holds and stats.accounting.stored == 80


def _pool_workers() -> list[int]:
    """This process's spawned worker processes."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"spawn_main" in cmdline:
            found.append(int(proc.name))
    return found


def test_a_worker_process_killed_mid_run_fails_the_run_loudly(mapillary, home: Path) -> None:
    imagery, _ = mapillary
    imagery.add(*hostile_world(300, 0.0, seed=3))
    imagery.sleep_s = 0.05
    spec = hostile_spec(concurrency=4)
    layout = DatasetLayout(home, spec.name)

    def kill_one() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (sum(imagery.hits.values()) < 30 or not _pool_workers()):
            time.sleep(0.02)
        os.kill(_pool_workers()[0], signal.SIGKILL)  # what the OOM killer does

    killer = threading.Thread(target=kill_one)
    killer.start()
    with pytest.raises(WorkerCrashed, match="worker process died"):
        ingest_region(spec, layout, "north", log=lambda _: None)
    killer.join()
    imagery.sleep_s = 0.0
    stats = ingest_region(spec, layout, "north", log=lambda _: None)["mapillary"]
    assert stats.already_done > 0 and stats.accounting.holds and stats.accounting.stored == 300
