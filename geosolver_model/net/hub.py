"""Model files from the Hugging Face Hub, through `huggingface_hub` as its users configure it
(HF_ENDPOINT, HF_TOKEN, HF_HOME, HF_HUB_OFFLINE=1 for the cache alone): fetched once into the Hub
cache, verified there by huggingface_hub, and read from a local snapshot folder like any saved model.
The token is huggingface_hub's to send; nothing here writes or logs it."""

from __future__ import annotations

import re
from pathlib import Path

from geosolver_data.errors import GeosolverError

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class HubUnavailable(GeosolverError, RuntimeError):
    """A Hub repo's files could not be had (unreachable, unknown, private, or not a model of ours);
    the message names the repo, the revision and how to fetch them beforehand."""


def is_hub_id(name: str) -> bool:
    return bool(HUB_ID.fullmatch(name))


def hub_folder(repo_id: str, files: tuple[str, ...], revision: str | None = None) -> tuple[Path, str]:
    """(the snapshot folder holding `files` of the model repo at `revision` (default `main`), the commit
    it resolved to)."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RemoteEntryNotFoundError

    at = f"{repo_id}@{revision or 'main'}"
    try:
        paths = [Path(hf_hub_download(repo_id, name, revision=revision)) for name in files]
    except RemoteEntryNotFoundError as exc:  # the Hub answered: the repo lacks the file
        raise HubUnavailable(f"{at} has no {_missing(exc, files)}: not a folder GeoRetriever.save wrote") from None
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
        offline = "HF_HUB_OFFLINE is set and the cache lacks it; " if constants.HF_HUB_OFFLINE else ""
        raise HubUnavailable(
            f"cannot fetch {at} from {constants.ENDPOINT}: {offline}{type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]}. Fetch it beforehand where the Hub is reachable "
            f"(`hf download {repo_id} --revision {revision or 'main'}`, HF_TOKEN set for a private repo) and set "
            "HF_HUB_OFFLINE=1 to load it from the cache") from None
    folder = paths[0].parent
    return folder, folder.name  # snapshots/<commit>/


def base_commit(base: str, revision: str) -> str | None:
    """The commit a Hub base resolves to at `revision` (its config.json fetched into, or found in, the
    cache); None for a local folder or a model built from a config. BaseModelUnavailable-worthy failures
    surface as HubUnavailable, in one line."""
    if Path(base).expanduser().is_dir() or not is_hub_id(base):
        return None
    return hub_folder(base, ("config.json",), revision)[1]


def _missing(exc: Exception, files: tuple[str, ...]) -> str:
    text = str(exc)
    return next((name for name in files if name in text), "one of " + ", ".join(files))
