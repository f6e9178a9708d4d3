"""A Hugging Face Hub on loopback, speaking the shapes `huggingface_hub` downloads through: the
`resolve` endpoint (HEAD with X-Repo-Commit, ETag and Content-Length, then GET, with a Range when
asked) for model and dataset repos, branches that move to new commits, and private repos that answer
401 without a Bearer token, as the Hub does. Point HF_ENDPOINT at `server.url`."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web


def _commit(files: dict[str, bytes]) -> str:
    digest = hashlib.sha1()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha1(files[name]).digest())
    return digest.hexdigest()  # 40 hex digits, like a git commit


@dataclass
class FakeHub:
    """repos: (kind, repo_id) -> {commit: files}; refs: (kind, repo_id) -> {branch: commit}."""

    repos: dict[tuple[str, str], dict[str, dict[str, bytes]]] = field(default_factory=dict)
    refs: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    private: set[str] = field(default_factory=set)
    token: str = "hf_test_token"
    requests: Counter[str] = field(default_factory=Counter)  # "METHOD path"
    seen_authorization: list[str] = field(default_factory=list)

    def push(self, repo_id: str, files: dict[str, bytes], kind: str = "model", branch: str = "main") -> str:
        """A new commit holding `files`, which `branch` then points at; its hash."""
        commit = _commit(files)
        self.repos.setdefault((kind, repo_id), {})[commit] = dict(files)
        self.refs.setdefault((kind, repo_id), {})[branch] = commit
        return commit

    def app(self) -> web.Application:
        app = web.Application()
        for prefix, kind in (("", "model"), ("/datasets", "dataset")):
            app.router.add_route("*", prefix + "/{owner}/{name}/resolve/{revision}/{path:.+}", self._resolver(kind))
        return app

    def _resolver(self, kind: str):
        async def resolve(request: web.Request) -> web.StreamResponse:
            repo = f"{request.match_info['owner']}/{request.match_info['name']}"
            self.requests[f"{request.method} {request.path}"] += 1
            auth = request.headers.get("Authorization", "")
            if auth:
                self.seen_authorization.append(auth)
            if repo in self.private and auth != f"Bearer {self.token}":
                return web.Response(status=401, headers={"X-Error-Code": "GatedRepo" if auth else "RepoNotFound"},
                                    text="Invalid username or password.")
            if (kind, repo) not in self.repos:
                return web.Response(status=404, headers={"X-Error-Code": "RepoNotFound"}, text="Repository not found")
            revision = request.match_info["revision"]
            commit = self.refs[(kind, repo)].get(revision, revision)
            files = self.repos[(kind, repo)].get(commit)
            if files is None:
                return web.Response(status=404, headers={"X-Error-Code": "RevisionNotFound"}, text="Invalid rev id")
            body = files.get(request.match_info["path"])
            if body is None:
                return web.Response(status=404, headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit},
                                    text="Entry not found")
            headers = {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(body).hexdigest()}"',
                       "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
            if request.method == "HEAD":
                return web.Response(headers={**headers, "Content-Length": str(len(body))})
            span = request.http_range
            if span.start is not None or span.stop is not None:
                part = body[span]
                start = span.start or 0
                headers["Content-Range"] = f"bytes {start}-{start + len(part) - 1}/{len(body)}"
                return web.Response(status=206, body=part, headers=headers)
            return web.Response(body=body, headers=headers)

        return resolve
