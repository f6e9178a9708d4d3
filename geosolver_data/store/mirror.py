"""GEOSOLVER_HOME on object storage (`s3://bucket/prefix`, or any fsspec URI).

Every stage works on local files (DuckDB, FAISS and safetensors want paths), so a remote home has a
local working copy under $GEOSOLVER_CACHE. A step pulls what changed in the remote home before it
runs and pushes what it wrote after; published artifacts are immutable and written by rename, so a
version is complete wherever it is seen. Two steps push disjoint files (their own partition's work,
their own version folder) except for the small LATEST pointers, where the last writer wins, as it
does on a local disk.

Files are never deleted remotely, with one exception: a ingest ledger's parts, which the ledger
itself replaces (its byte-carrying parts by one part of ids once raw_images holds the bytes, many
small rejects parts by one). A part this copy had synced and the ledger removed is removed remotely
too, so the next pod does not pull it back; only while its ledger folder still exists here, so a
working copy trimmed by hand never deletes anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

CACHE_ENV = "GEOSOLVER_CACHE"
_STATE = ".mirror-state.json"
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_LEDGER_PART = re.compile(r"^work/[^/]+/ledger/[^/]+/[^/]+/(rows|slim|rejects)-[^/]+\.parquet$")


def is_remote(home: str | os.PathLike[str] | None) -> bool:
    return bool(home) and bool(_URI.match(str(home))) and not str(home).startswith("file://")


def cache_root(uri: str) -> Path:
    """The local working copy of a remote home: one folder per URI under $GEOSOLVER_CACHE."""
    base = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "geosolver")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", uri).strip("-")[:60]
    return (base / f"{slug}-{hashlib.sha256(uri.encode()).hexdigest()[:8]}").absolute()


def _remote_tag(info: dict) -> str:
    """What says a remote file changed: its ETag where the store gives one."""
    return str(info.get("ETag") or info.get("mtime") or info.get("size"))


def _under(rel: str, prefixes: tuple[str, ...]) -> bool:
    return any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in prefixes)


class Mirror:
    """Keeps `local` and the remote `uri` in step, file by file (size and modification time)."""

    def __init__(self, uri: str) -> None:
        import fsspec  # only remote homes need it (and s3fs for s3://)

        self.uri = uri.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.uri)
        self.local = cache_root(uri)
        self.local.mkdir(parents=True, exist_ok=True)
        state_path = self.local / _STATE
        self.state: dict[str, dict] = json.loads(state_path.read_text()) if state_path.exists() else {}
        self.bytes_pulled = 0
        self.bytes_pushed = 0

    def _save(self) -> None:
        (self.local / _STATE).write_text(json.dumps(self.state, sort_keys=True))

    def _local_stamp(self, path: Path) -> list[int]:
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]

    def pull(self, prefixes: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> int:
        """Download remote files that are new or changed since this copy last saw them; with `prefixes`
        (paths relative to the home), only those under one of them; none under one of `skip`."""
        count = 0
        remote = self.fs.find(self.root, detail=True) if self.fs.exists(self.root) else {}
        for path, info in remote.items():
            rel = path[len(self.root):].lstrip("/")
            if (prefixes and not _under(rel, prefixes)) or _under(rel, skip):
                continue
            tag = _remote_tag(info)
            target = self.local / rel
            if self.state.get(rel, {}).get("remote") == tag and target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.pull")
            self.fs.get_file(path, str(tmp))
            self.bytes_pulled += tmp.stat().st_size
            os.replace(tmp, target)
            self.state[rel] = {"remote": tag, "local": self._local_stamp(target)}
            count += 1
        self._save()
        return count

    def push(self) -> int:
        """Upload local files that are new or changed since the last pull or push; files still being
        written (hidden temporaries) stay behind."""
        count = 0
        for path in sorted(p for p in self.local.rglob("*") if p.is_file()):
            rel = path.relative_to(self.local).as_posix()
            if rel == _STATE or any(part.startswith(".") for part in Path(rel).parts):
                continue
            stamp = self._local_stamp(path)
            if self.state.get(rel, {}).get("local") == stamp:
                continue
            remote = f"{self.root}/{rel}"
            self.fs.put_file(str(path), remote)
            self.bytes_pushed += stamp[0]
            self.state[rel] = {"remote": _remote_tag(self.fs.info(remote)), "local": stamp}
            count += 1
        for rel in sorted(self.state):
            if _LEDGER_PART.match(rel) and not (self.local / rel).exists() and (self.local / rel).parent.is_dir():
                self.fs.rm_file(f"{self.root}/{rel}")
                del self.state[rel]
                count += 1
        self._save()
        return count
