"""Writing files so that no reader ever sees half of one: a temporary name, then a rename.

A reader (or a rerun after a crash, kill -9 included) sees a file or folder whole or not at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """This process's umask, read without changing it (os.umask can only set it, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def share_files(folder: Path) -> None:
    """Give every file and folder under `folder` the modes a plain open()/mkdir() would: what the home's
    other readers can read. Writers that create 0600 files (mkstemp, safetensors) would leave a shared
    volume's group unable to read weights that everything else there can."""
    umask = current_umask()
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; artifacts are meant to be shared
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(target: Path, payload: Any) -> None:
    with atomic_path(target) as tmp:
        # allow_nan=False: NaN is no JSON (readers other than Python's refuse it); a NaN here is a bug to see
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str, allow_nan=False) + "\n")


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def publish_dir(staging: Path, final: Path) -> bool:
    """Move a finished staging folder to `final`. Returns False if `final` already existed.

    Versions are content hashes, so an existing `final` holds the same content: the staging
    copy is dropped and the published one is left untouched (artifacts are immutable).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(staging)
        return False
    try:
        os.rename(staging, final)
    except OSError:
        if final.exists():  # another run published the same version first
            shutil.rmtree(staging)
            return False
        raise
    return True


def staging_dir(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
    os.chmod(path, 0o777 & ~current_umask())  # mkdtemp makes 0700
    return path
