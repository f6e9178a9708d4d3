"""A dataset repo on the Hugging Face Hub read in place: OpenStreetView-5M's layout (`<split>.csv` and
`images/<split>/NN.zip`) without downloading its archives.

The metadata CSV comes through huggingface_hub (its cache, checked against the ETag); the archives are
read by HTTP range requests through the ingest fetcher (politeness, retries, the redirect to the
Hub's file host): each archive's central directory once, kept in the home as a columnar index under
the archive's content hash (a refresh, or another region, reads it from there), then only the members
of the region or part being ingested. The commit a run reads is pinned when it starts, so a branch that
moves mid-run cannot mix two versions. `HF_TOKEN` (or a saved login) is sent to the Hub's own host only,
and is never written anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from geosolver_data.errors import GeosolverError, first_line
from geosolver_data.ingest.archives import INDEX_SCHEMA, TAIL_BYTES, NeedEarlier, directory_from_tail
from geosolver_data.ingest.fetch import Fetcher, FetchError
from geosolver_data.store.atomic import atomic_path

DIRECTORY_FORMAT = 1  # bumped when the cached index's columns change


class HubError(GeosolverError, RuntimeError):
    """The repo cannot be read (unknown, private without a token, unreachable): one line that says how."""


@dataclass(frozen=True)
class HubArchive:
    """One zip archive of the repo at the pinned commit."""

    path: str  # in the repo: images/train/00.zip
    size: int
    sha256: str  # its content's hash (LFS), the key its cached directory is kept under
    url: str  # the resolve URL at the pinned commit


@dataclass(frozen=True)
class HubSplit:
    """What one run reads of a repo: the commit, the metadata CSV (in huggingface_hub's cache), the archives."""

    repo: str
    commit: str
    metadata: Path
    archives: tuple[HubArchive, ...]


def auth_headers() -> dict[str, str]:
    """The Hub token (HF_TOKEN, or `hf auth login`'s) as a header; empty without one."""
    from huggingface_hub import get_token

    token = get_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def open_split(repo: str, revision: str, split: str) -> HubSplit:
    """Pin `revision` to its commit, fetch `<split>.csv` into huggingface_hub's cache and list
    `images/<split>/*.zip` with their sizes and hashes; HubError in one line when the Hub says no."""
    from huggingface_hub import HfApi, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    api = HfApi()
    where = f"dataset {repo} at {revision}"
    reading = "its commit"
    try:
        commit = api.dataset_info(repo, revision=revision).sha
        assert commit, "the Hub answered without a commit"
        reading = f"{split}.csv"
        metadata = Path(hf_hub_download(repo, f"{split}.csv", repo_type="dataset", revision=commit))
        reading = f"the list of images/{split}/"
        files = [f for f in api.list_repo_tree(repo, f"images/{split}", recursive=True, repo_type="dataset",
                                               revision=commit) if f.path.endswith(".zip") and hasattr(f, "size")]
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        raise HubError(f"cannot read {reading} of the {where} on {api.endpoint}: {first_line(exc)} (a private "
                       "repo needs HF_TOKEN; check the repo id, the revision, the split and HF_ENDPOINT)") from exc
    archives = tuple(HubArchive(f.path, f.size, (f.lfs.sha256 if f.lfs else f.blob_id),
                                hf_hub_url(repo, f.path, repo_type="dataset", revision=commit))
                     for f in sorted(files, key=lambda f: f.path))
    if not archives:
        raise HubError(f"the {where} has no images/{split}/*.zip archives (is it in OSV-5M's layout?)")
    return HubSplit(repo, commit, metadata, archives)


async def directory_index(fetcher: Fetcher, archives: tuple[HubArchive, ...], cache: Path,
                          log: Callable[[str], None] = print) -> pa.Table:
    """The .jpg members of every archive (INDEX_SCHEMA, `_path` the archive's path in the repo): from
    the cache where an archive's directory was read before, else by range requests (concurrently,
    within the fetcher's politeness), then cached."""
    headers = auth_headers()
    read = [a for a in archives if not _cached(cache, a).is_file()]
    if read:
        log(f"reading the central directories of {len(read)} of {len(archives)} archives (each once; kept in {cache})")
    await asyncio.gather(*(_read_directory(fetcher, a, cache, headers) for a in read))
    tables = []
    for archive in archives:
        table = pq.read_table(_cached(cache, archive), schema=INDEX_SCHEMA)
        tables.append(table.set_column(1, "_path", pa.array([archive.path] * len(table), pa.string())))
    return pa.concat_tables(tables)


def _cached(cache: Path, archive: HubArchive) -> Path:
    return cache / f"{archive.sha256}-v{DIRECTORY_FORMAT}.parquet"


async def _read_directory(fetcher: Fetcher, archive: HubArchive, cache: Path, headers: dict[str, str]) -> None:
    start = max(0, archive.size - TAIL_BYTES)
    data = await _range(fetcher, archive, start, archive.size, headers)
    for _ in range(3):  # the tail, then (at most twice) from where zipfile says the directory starts
        try:
            batch = directory_from_tail(archive.size, start, data, archive.path)
            break
        except NeedEarlier as more:
            data = await _range(fetcher, archive, more.offset, start, headers) + data
            start = more.offset
        except Exception as exc:  # zipfile's BadZipFile, or what a damaged record makes it raise
            raise HubError(f"{archive.path}: not a readable zip archive ({type(exc).__name__}: {exc})") from exc
    else:
        raise HubError(f"{archive.path}: its central directory could not be located")
    target = _cached(cache, archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        pq.write_table(pa.Table.from_batches([batch], schema=INDEX_SCHEMA), tmp)


async def _range(fetcher: Fetcher, archive: HubArchive, start: int, end: int, headers: dict[str, str]) -> bytes:
    try:
        return await fetcher.range(archive.url, start, end, headers)
    except FetchError as exc:
        raise HubError(f"{archive.path}: its central directory could not be read ({exc})") from exc
