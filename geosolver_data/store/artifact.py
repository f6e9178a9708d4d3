"""Versioned artifacts, one type for every kind: datasets, models, evaluations and indexes.

A kind keeps its versions as `<root>/<version>/` folders, each with a `manifest.json`, and a pointer
file (`LATEST`, or `LATEST_<name>` where one root holds several series) naming the newest. A version
is a content hash: same inputs, same version. It is built in a staging folder and renamed into
place, so it appears whole or not at all, and it is never modified afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, TypeVar

from filelock import FileLock
from pydantic import ValidationError

from geosolver_data.errors import GeosolverError
from geosolver_data.store.atomic import file_sha256, publish_dir, share_files, staging_dir, write_json, write_text
from geosolver_data.store.manifests import SCHEMAS, Manifest

MANIFEST = "manifest.json"
# A version is a folder name: hex content hashes here, never a path (a pointer holding `../../etc` must not
# lead outside the home).
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def is_version(name: str) -> bool:
    """Whether a name can be a version folder: never a path, never `..`."""
    return bool(VERSION.match(name)) and ".." not in name


class ArtifactMissing(GeosolverError, RuntimeError):
    """No such version, or an input not materialised yet (for every region); the message says what to
    materialise."""


class ArtifactDamaged(ArtifactMissing):
    """A published version whose files do not match its manifest; the message names them and the remedy."""


_VERIFIED: set[tuple[str, int, int, str]] = set()  # (path, size, mtime_ns, sha256) hashed intact in this process


def file_matches(path: Path, sha256: str) -> bool:
    """Whether the file's sha256 is the one given: hashed once per process while its size and mtime hold."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, sha256)
    if key not in _VERIFIED:
        if file_sha256(path) != sha256:
            return False
        _VERIFIED.add(key)
    return True


def checksums(folder: Path, known: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, int]]:
    """sha256 and size of every file under `folder` (but the manifest), by relative path; `known` sha256s
    (shards hashed while written) are taken as given."""
    known = known or {}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    rel = [p.relative_to(folder).as_posix() for p in files]
    return ({r: known.get(r) or file_sha256(p) for r, p in zip(rel, files, strict=True)},
            {r: p.stat().st_size for r, p in zip(rel, files, strict=True)})


M = TypeVar("M", bound=Manifest)


@dataclass(frozen=True)
class Artifact(Generic[M]):
    kind: str  # dataset | model | eval | index
    version: str
    path: Path
    manifest: dict  # manifest.json as written
    info: M  # the same, parsed once into its kind's type (manifests.SCHEMAS: DatasetManifest, ...)
    new: bool = False  # False when this exact version had been published before


def _damage(artifact: Artifact, under: str, deep: bool) -> list[str]:
    """A published version's files against its manifest: missing, another size, or (with `deep`) another
    sha256; only those under `under` when given."""
    sizes = artifact.manifest.get("file_bytes", {})
    found = []
    for rel, sha in artifact.manifest.get("files", {}).items():
        if under and not rel.startswith(f"{under}/"):
            continue
        path = artifact.path / rel
        if not path.is_file():
            found.append(f"{rel}: missing")
        elif rel in sizes and path.stat().st_size != sizes[rel]:
            found.append(f"{rel}: {path.stat().st_size} bytes, the manifest says {sizes[rel]}")
        elif deep and not file_matches(path, sha):
            found.append(f"{rel}: sha256 differs from the manifest")
    return found


@dataclass(frozen=True)
class Shelf(Generic[M]):
    """The published versions of one kind under `root`; their manifests are parsed into the kind's type
    (manifests.SCHEMAS), which `Shelf[ModelManifest]` and the like name for readers."""

    kind: str
    root: Path
    pointer: str = "LATEST"
    produced_by: str = ""  # the asset that publishes this kind, for error messages

    def path(self, version: str) -> Path:
        if not is_version(version):
            raise ArtifactMissing(f"{version!r} is not a {self.kind} version name (a folder under {self.root})")
        return self.root / version

    def exists(self, version: str) -> bool:
        return (self.path(version) / MANIFEST).exists()

    def get(self, version: str, new: bool = False) -> Artifact[M]:
        if not self.exists(version):
            raise ArtifactMissing(f"{self.kind} version {version!r} does not exist under {self.root}")
        try:
            manifest = json.loads((self.path(version) / MANIFEST).read_text())
            info = SCHEMAS.get(self.kind, Manifest).model_validate(manifest)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ArtifactDamaged(f"{self.path(version) / MANIFEST}: not a {self.kind} manifest ({where}: "
                                  f"{first['msg']}); {self._remedy()}") from None
        except (OSError, ValueError) as exc:
            raise ArtifactDamaged(f"{self.path(version) / MANIFEST}: unreadable ({type(exc).__name__}); "
                                  f"{self._remedy()}") from None
        return Artifact(self.kind, version, self.path(version), manifest, info, new)

    def _remedy(self) -> str:
        return f"materialise {self.produced_by or 'its asset'} again to set the damaged version aside and rebuild it"

    def problems(self, version: str, under: str = "", deep: bool = True) -> list[str]:
        """What is wrong with a published version's files against its manifest (empty: intact). `under`
        limits the check to one subfolder; `deep` compares sha256 (once per process per file), else
        presence and size only. A version published before manifests listed their files has nothing to
        compare."""
        try:
            artifact = self.get(version)
        except ArtifactDamaged:
            return [f"{MANIFEST}: unreadable"]
        return _damage(artifact, under, deep)

    def require_intact(self, version: str, under: str = "", deep: bool = True) -> Artifact[M]:
        """The version, or ArtifactDamaged naming what is wrong and the remedy, in one line."""
        artifact = self.get(version)  # an unreadable manifest: ArtifactDamaged with the remedy already
        found = _damage(artifact, under, deep)
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise ArtifactDamaged(f"{self.kind} version {version} under {self.root} is damaged: {found[0]}{more}; "
                                  f"{self._remedy()}")
        return artifact

    def _set_aside(self, version: str) -> Path:
        """Move a damaged version out of the way (kept for inspection, hidden from readers), never overwrite it."""
        aside = self.root / f".damaged-{version}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}"
        os.rename(self.path(version), aside)
        return aside

    def latest_version(self) -> str | None:
        try:
            version = (self.root / self.pointer).read_text(errors="replace").strip() or None
        except FileNotFoundError:
            return None
        if version is not None and not is_version(version):
            raise ArtifactMissing(f"{self.root / self.pointer} holds {version[:80]!r}, which is not a version name; "
                                  f"materialise {self.produced_by or 'the asset'} again to rewrite it")
        return version

    def latest(self) -> Artifact[M]:
        version = self.latest_version()
        if version is None:
            hint = f": materialise {self.produced_by} first" if self.produced_by else ""
            raise ArtifactMissing(f"no {self.kind} version is published under {self.root}{hint}")
        return self.get(version)

    def set_latest(self, version: str) -> None:
        write_text(self.root / self.pointer, version + "\n")

    def publish(self, build: Callable[[Path], dict], version: str | None = None) -> Artifact[M]:
        """Build a version in a staging folder and publish it; it becomes the latest.

        `build(staging)` writes the files and returns the manifest; the manifest gets every file's sha256
        and size. A version known beforehand (a hash of the inputs) that is already published intact is
        not built again; a damaged one is set aside (`.damaged-<version>-<time>`) and built anew. One
        publisher at a time per shelf, which also removes staging folders a killed publisher left."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / ".publish.lock"):
            for leftover in self.root.glob(".staging-*"):
                shutil.rmtree(leftover, ignore_errors=True)
            if version is not None and self.exists(version):
                if not self.problems(version):
                    self.set_latest(version)
                    return self.get(version)
                self._set_aside(version)
            staging = staging_dir(self.root)
            try:
                manifest = build(staging)
                version = version or manifest["version"]
                known = {s["path"]: s["sha256"] for s in manifest.get("shards", [])} | manifest.get("files", {})
                share_files(staging)  # what a writer made 0600 (safetensors does) becomes readable like the rest
                files, sizes = checksums(staging, known)
                write_json(staging / MANIFEST, {"artifact": self.kind, **manifest, "version": version,
                                                "files": files, "file_bytes": sizes})
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            if self.exists(version) and self.problems(version):  # a content-hash version, published damaged
                self._set_aside(version)
            new = publish_dir(staging, self.path(version))
            self.set_latest(version)
            return self.get(version, new)

    def all(self) -> list[Artifact[M]]:
        """Every published version whose manifest reads, oldest first (by the manifest's `created_at`)."""
        found = []
        for manifest in self.root.glob(f"*/{MANIFEST}"):
            if is_version(manifest.parent.name):
                try:
                    found.append(self.get(manifest.parent.name))
                except ArtifactDamaged:
                    continue  # named by require_intact when it is asked for
        return sorted(found, key=lambda a: str(a.manifest.get("created_at", "")))

    def remove(self, version: str) -> None:
        shutil.rmtree(self.path(version))
