"""Versioned artifacts, one type for every kind: datasets, models, evaluations and indexes.

A kind keeps its versions as `<root>/<version>/` folders, each with a `manifest.json`, and a pointer
file (`LATEST`, or `LATEST_<name>` where one root holds several series) naming the newest. A version
is a content hash: same inputs, same version. It is built in a staging folder and renamed into
place, so it appears whole or not at all, and it is never modified afterwards.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from geosolver_data.store.atomic import publish_dir, staging_dir, write_json, write_text

MANIFEST = "manifest.json"
# A version is a folder name: hex content hashes here, never a path (a pointer holding `../../etc` must not
# lead outside the home).
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ArtifactMissing(RuntimeError):
    """No such version (or none published yet); the message says what to materialise."""


@dataclass(frozen=True)
class Artifact:
    kind: str  # dataset | model | eval | index
    version: str
    path: Path
    manifest: dict
    new: bool = False  # False when this exact version had been published before


@dataclass(frozen=True)
class Shelf:
    """The published versions of one kind under `root`."""

    kind: str
    root: Path
    pointer: str = "LATEST"
    produced_by: str = ""  # the asset that publishes this kind, for error messages

    def path(self, version: str) -> Path:
        if not VERSION.match(version) or ".." in version:
            raise ArtifactMissing(f"{version!r} is not a {self.kind} version name (a folder under {self.root})")
        return self.root / version

    def exists(self, version: str) -> bool:
        return (self.path(version) / MANIFEST).exists()

    def get(self, version: str, new: bool = False) -> Artifact:
        if not self.exists(version):
            raise ArtifactMissing(f"{self.kind} version {version!r} does not exist under {self.root}")
        manifest = json.loads((self.path(version) / MANIFEST).read_text())
        return Artifact(self.kind, version, self.path(version), manifest, new)

    def latest_version(self) -> str | None:
        try:
            version = (self.root / self.pointer).read_text(errors="replace").strip() or None
        except FileNotFoundError:
            return None
        if version is not None and (not VERSION.match(version) or ".." in version):
            raise ArtifactMissing(f"{self.root / self.pointer} holds {version[:80]!r}, which is not a version name; "
                                  f"materialise {self.produced_by or 'the asset'} again to rewrite it")
        return version

    def latest(self) -> Artifact:
        version = self.latest_version()
        if version is None:
            hint = f": materialise {self.produced_by} first" if self.produced_by else ""
            raise ArtifactMissing(f"no {self.kind} version is published under {self.root}{hint}")
        return self.get(version)

    def set_latest(self, version: str) -> None:
        write_text(self.root / self.pointer, version + "\n")

    def publish(self, build: Callable[[Path], dict], version: str | None = None) -> Artifact:
        """Build a version in a staging folder and publish it; it becomes the latest.

        `build(staging)` writes the files and returns the manifest. A version known beforehand
        (a hash of the inputs) that is already published is not built again; otherwise the
        manifest names it (a hash of the content)."""
        if version is not None and self.exists(version):
            self.set_latest(version)
            return self.get(version)
        staging = staging_dir(self.root)
        try:
            manifest = build(staging)
            version = version or manifest["version"]
            write_json(staging / MANIFEST, {"artifact": self.kind, **manifest, "version": version})
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        new = publish_dir(staging, self.path(version))
        self.set_latest(version)
        return self.get(version, new)

    def all(self) -> list[Artifact]:
        """Every published version, oldest first (by the manifest's `created_at`)."""
        found = [self.get(p.parent.name) for p in self.root.glob(f"*/{MANIFEST}")
                 if VERSION.match(p.parent.name) and ".." not in p.parent.name]
        return sorted(found, key=lambda a: str(a.manifest.get("created_at", "")))

    def remove(self, version: str) -> None:
        shutil.rmtree(self.path(version))
