"""Publishing a version to the Hugging Face Hub: a dataset version folder (shards, card, reports,
manifest) or a model's published folder at the repo's root (weights, card, and the version's manifest,
so `GeoRetriever.from_pretrained("<repo>")` loads it) as one commit whose message names the version.

The folder is what the home holds, checked against its manifest first (a damaged version is never
pushed). huggingface_hub does the transfer (Xet or LFS, whichever the Hub offers) and leaves out files
the repo already has, so pushing the same version again makes no commit. `HF_TOKEN` (or a saved login)
is the credential; it is never written anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from geosolver_data.errors import GeosolverError, first_line
from geosolver_data.store.artifact import Artifact

RepoType = Literal["dataset", "model"]
MODEL_FOLDER = "finetuned"  # the published model inside a model version (geosolver_model.names.PUBLISHED)


class PushError(GeosolverError, RuntimeError):
    """The Hub refused or could not be reached: one line naming the repo and what to check."""


@dataclass(frozen=True)
class Pushed:
    repo: str
    repo_type: RepoType
    version: str
    commit: str
    url: str
    new_commit: bool  # False: the repo already held this version's files


def commit_message(artifact: Artifact, name: str) -> str:
    return f"{artifact.kind} {name + ' ' if name else ''}version {artifact.version}"


def repo_files(artifact: Artifact) -> dict[str, Path]:
    """Path in the repo -> file: a dataset version as it is; a model's published folder at the root,
    with the version's manifest. Hidden files are left out."""
    root = artifact.path / MODEL_FOLDER if artifact.kind == "model" else artifact.path
    files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}
    if artifact.kind == "model":
        files["manifest.json"] = artifact.path / "manifest.json"
    return files


def push_version(artifact: Artifact, repo: str, repo_type: RepoType, name: str = "", private: bool = False,
                 log: Callable[[str], None] = print) -> Pushed:
    """Push the version to `repo` (created when missing, private if asked) as one commit."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    files = repo_files(artifact)
    try:
        api.create_repo(repo, repo_type=repo_type, private=private, exist_ok=True)
        before = api.repo_info(repo, repo_type=repo_type).sha
        log(f"pushing {artifact.kind} version {artifact.version} ({len(files)} files, "
            f"{sum(p.stat().st_size for p in files.values()):,} bytes) to {repo_type} repo {repo}")
        info = api.create_commit(repo, [CommitOperationAdd(path, str(file)) for path, file in files.items()],
                                 commit_message=commit_message(artifact, name), repo_type=repo_type,
                                 commit_description=f"Published by Geosolver from {artifact.kind} version "
                                                    f"{artifact.version}.")
    except (HfHubHTTPError, OSError, ValueError, RuntimeError) as exc:  # huggingface_hub wraps a failed upload
        first = "; ".join(first_line(e) for e in (exc, exc.__cause__) if e is not None)[:300]  # in a RuntimeError
        raise PushError(f"cannot push {artifact.kind} version {artifact.version} to the {repo_type} repo {repo} on "
                        f"{api.endpoint}: {first} (HF_TOKEN must hold a token with write access)") from exc
    prefix = "datasets/" if repo_type == "dataset" else ""
    return Pushed(repo, repo_type, artifact.version, info.oid, f"{api.endpoint}/{prefix}{repo}",
                  new_commit=info.oid != before)
