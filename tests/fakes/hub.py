"""A Hugging Face Hub on loopback, speaking the shapes `huggingface_hub` downloads through: the
`resolve` endpoint (HEAD with X-Repo-Commit, ETag and Content-Length, then GET, with a Range when
asked) for model and dataset repos, repository info and tree listings (`/api/{kind}s/...`), branches
that move to new commits, and private repos that answer 401 without a Bearer token, as the Hub does.
Point HF_ENDPOINT at `server.url`.

With `cdn` set (the URL of `cdn_routes` served on another host), LFS files (archives, Parquet) are
served as the Hub serves them: `resolve` answers 302 to a signed URL on that host (HEAD carries
X-Linked-Etag and X-Linked-Size), which serves the bytes, with Range, and the faults of `faults`
on every `fault_every`-th request: 429 with Retry-After, 500, a reset, a truncated body."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import web

LFS_SUFFIXES = (".zip", ".parquet", ".safetensors", ".png")
CDN_FAULTS = ("429", "500", "reset", "truncated")


def card_errors(readme: str, repo_type: str) -> list[str]:
    """What the Hub refuses in a README's YAML front matter: not YAML, not a mapping, a licence outside its
    list without a name, a malformed `configs` or `model-index`."""
    if not readme.startswith("---\n"):
        return []
    try:
        meta = yaml.safe_load(readme.split("\n---", 2)[0][4:])
    except yaml.YAMLError as exc:
        return [f"the metadata is not YAML: {exc}"]
    if not isinstance(meta, dict):
        return ["the metadata must be a mapping"]
    errors = []
    if meta.get("license") == "other" and not meta.get("license_name"):
        errors.append('"license_name" is required when "license" is "other"')
    for config in meta.get("configs") or []:
        if not (isinstance(config, dict) and "config_name" in config and isinstance(config.get("data_files"), list)):
            errors.append('"configs" items need "config_name" and a "data_files" list')
    for model in meta.get("model-index") or []:
        for result in model.get("results") or []:
            if not {"task", "dataset", "metrics"} <= set(result) or not all(
                    {"type", "value"} <= set(m) for m in result["metrics"]):
                errors.append('"model-index" results need task, dataset and metrics (each with type and value)')
    return errors


def _git_oid(body: bytes) -> str:
    """What git (and the Hub's preupload) calls a regular file's oid."""
    return hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()


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
    blobs: dict[str, bytes] = field(default_factory=dict)  # every pushed file by its sha256 (what the CDN serves)
    uploaded: dict[str, bytes] = field(default_factory=dict)  # LFS objects uploaded, by sha256, until committed
    commits: list[tuple[str, str, str, str]] = field(default_factory=list)  # (kind, repo, summary, oid) of each commit
    refuse_uploads: bool = False  # the storage refuses LFS uploads (an expired upload URL)
    cdn: str = ""  # where LFS files are redirected to ("" serves them from resolve itself)
    faults: tuple[str, ...] = ()  # of CDN_FAULTS, taken in turn
    fault_every: int = 0  # every n-th GET of the CDN answers with the next fault (0: none)
    cdn_gets: int = 0
    cdn_bytes: int = 0  # body bytes the CDN sent (whole answers, faults' partial ones included)
    cdn_authorization: list[str] = field(default_factory=list)  # must stay empty: the token is the Hub's
    signature: str = "f00d"  # what the CDN's signed URLs carry; changing it expires those handed out
    cdn_bytes_per_s: float = 0.0  # paces each answer of the CDN like a link of this speed (0: loopback speed)
    cdn_log: list[tuple[float, str, int, int]] = field(default_factory=list)  # (time.time(), sha256, start, bytes)

    def push(self, repo_id: str, files: dict[str, bytes], kind: str = "model", branch: str = "main") -> str:
        """A new commit holding `files`, which `branch` then points at; its hash."""
        commit = _commit(files)
        self.repos.setdefault((kind, repo_id), {})[commit] = dict(files)
        self.blobs.update({hashlib.sha256(body).hexdigest(): body for body in files.values()})
        self.refs.setdefault((kind, repo_id), {})[branch] = commit
        return commit

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)  # uploads of LFS objects
        for prefix, kind in (("", "model"), ("/datasets", "dataset")):
            app.router.add_route("*", prefix + "/{owner}/{name}/resolve/{revision}/{path:.+}", self._resolver(kind))
            app.router.add_get(f"/api/{kind}s/{{owner}}/{{name}}/revision/{{revision}}", self._info(kind))
            app.router.add_get(f"/api/{kind}s/{{owner}}/{{name}}", self._info(kind))
            app.router.add_get(f"/api/{kind}s/{{owner}}/{{name}}/tree/{{revision}}", self._tree(kind))
            app.router.add_get(f"/api/{kind}s/{{owner}}/{{name}}/tree/{{revision}}/{{path:.+}}", self._tree(kind))
        app.router.add_get("/cdn/{sha256}", self._cdn)
        app.router.add_post("/api/repos/create", self._create)
        app.router.add_post("/api/validate-yaml", self._validate_yaml)
        for kind in ("model", "dataset"):
            app.router.add_post(f"/api/{kind}s/{{owner}}/{{name}}/preupload/{{revision}}", self._preupload(kind))
            app.router.add_post(f"/api/{kind}s/{{owner}}/{{name}}/commit/{{revision}}", self._commit(kind))
        for prefix in ("", "datasets/"):
            app.router.add_post(f"/{prefix}{{owner}}/{{name}}.git/info/lfs/objects/batch", self._lfs_batch)
        app.router.add_put("/lfs-upload/{sha256}", self._lfs_put)
        return app

    # What `HfApi.create_repo` and `upload_folder` call (with Xet off: the LFS "basic" transfer).

    def _writer(self, request: web.Request) -> web.Response | None:
        """401 unless the request carries the token (every write needs one)."""
        auth = request.headers.get("Authorization", "")
        if auth:
            self.seen_authorization.append(auth)
        if auth != f"Bearer {self.token}":
            return web.Response(status=401, headers={"X-Error-Code": "Unauthorized"}, text="Invalid credentials")
        return None

    async def _create(self, request: web.Request) -> web.StreamResponse:
        self.requests[f"{request.method} {request.path}"] += 1
        if (refused := self._writer(request)) is not None:
            return refused
        payload = await request.json()
        kind, repo = payload.get("type") or "model", f"{payload['organization']}/{payload['name']}"
        prefix = "datasets/" if kind == "dataset" else ""
        if (kind, repo) in self.repos:
            return web.json_response({"error": "You already created this repo", "url": f"/{prefix}{repo}"},
                                     status=409)
        self.push(repo, {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"}, kind=kind)
        if payload.get("visibility") == "private":
            self.private.add(repo)
        return web.json_response({"url": f"{request.url.origin()}/{prefix}{repo}"})

    async def _validate_yaml(self, request: web.Request) -> web.StreamResponse:
        """The card's front matter, checked as the Hub checks it before a commit (the rules the cards here meet)."""
        payload = await request.json()
        errors = card_errors(payload["content"], payload.get("repoType") or "model")
        return web.json_response({"errors": [{"message": e} for e in errors], "warnings": []},
                                 status=400 if errors else 200)

    def _preupload(self, kind: str):
        async def preupload(request: web.Request, commit: str, files: dict[str, bytes]) -> web.StreamResponse:
            answer = []
            for entry in (await request.json())["files"]:
                lfs = entry["path"].endswith(LFS_SUFFIXES)
                old = files.get(entry["path"])
                oid = None if old is None else hashlib.sha256(old).hexdigest() if lfs else _git_oid(old)
                answer.append({"path": entry["path"], "uploadMode": "lfs" if lfs else "regular",
                               "shouldIgnore": False, "oid": oid})
            return web.json_response({"files": answer, "commitOid": commit})
        return self._on_repo(kind, preupload, write=True)

    async def _lfs_batch(self, request: web.Request) -> web.StreamResponse:
        self.requests[f"{request.method} {request.path}"] += 1
        if (refused := self._writer(request)) is not None:
            return refused
        repo = f"{request.match_info['owner']}/{request.match_info['name']}"
        held = {hashlib.sha256(body).hexdigest() for (_, name), commits in self.repos.items() if name == repo
                for files in commits.values() for body in files.values()}  # LFS storage is per repo
        objects = []
        for item in (await request.json())["objects"]:
            entry = {"oid": item["oid"], "size": item["size"]}
            if item["oid"] not in held:
                entry["actions"] = {"upload": {"href": f"{request.url.origin()}/lfs-upload/{item['oid']}"}}
            objects.append(entry)
        return web.json_response({"transfer": "basic", "objects": objects})

    async def _lfs_put(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.refuse_uploads:
            return web.Response(status=403, text="AccessDenied: the upload URL has expired")
        if hashlib.sha256(body).hexdigest() != request.match_info["sha256"]:
            return web.Response(status=400, text="the bytes do not match the oid")
        self.uploaded[request.match_info["sha256"]] = body
        return web.Response(status=200)

    def _commit(self, kind: str):
        async def commit(request: web.Request, parent: str, files: dict[str, bytes]) -> web.StreamResponse:
            files = dict(files)
            header: dict = {}
            for line in (await request.read()).splitlines():
                item = json.loads(line)
                value = item["value"]
                if item["key"] == "header":
                    header = value
                elif item["key"] == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] == "lfsFile":
                    body = self.uploaded.get(value["oid"]) or self.blobs.get(value["oid"])
                    if body is None:
                        return web.json_response({"error": f"LFS object {value['oid']} was not uploaded"}, status=422)
                    files[value["path"]] = body
                elif item["key"] == "deletedFile":
                    files.pop(value["path"], None)
            repo = f"{request.match_info['owner']}/{request.match_info['name']}"
            oid = self.push(repo, files, kind=kind, branch=request.match_info["revision"])
            self.commits.append((kind, repo, header.get("summary", ""), oid))
            prefix = "datasets/" if kind == "dataset" else ""
            return web.json_response({"commitUrl": f"{request.url.origin()}/{prefix}{repo}/commit/{oid}",
                                      "commitOid": oid, "pullRequestUrl": None})
        return self._on_repo(kind, commit, write=True)

    def _on_repo(self, kind: str, handler, write: bool = False):
        """`handler(request, commit, files)` behind what every repo endpoint checks first: a token for a write,
        the repo, its visibility and the revision (their errors as the Hub answers them)."""
        async def answer(request: web.Request) -> web.StreamResponse:
            if write and (refused := self._writer(request)) is not None:
                return refused
            found = self._files(kind, request)
            if isinstance(found, web.Response):
                return found
            return await handler(request, *found)
        return answer

    def _files(self, kind: str, request: web.Request) -> tuple[str, dict[str, bytes]] | web.Response:
        """The commit and files a request names, or the Hub's error answer (the request counted)."""
        self.requests[f"{request.method} {request.path}"] += 1
        repo = f"{request.match_info['owner']}/{request.match_info['name']}"
        auth = request.headers.get("Authorization", "")
        if auth:
            self.seen_authorization.append(auth)
        if repo in self.private and auth != f"Bearer {self.token}":
            return web.Response(status=401, headers={"X-Error-Code": "GatedRepo" if auth else "RepoNotFound"},
                                text="Invalid username or password.")
        if (kind, repo) not in self.repos:
            return web.Response(status=404, headers={"X-Error-Code": "RepoNotFound"}, text="Repository not found")
        revision = request.match_info.get("revision", "main")
        commit = self.refs[(kind, repo)].get(revision, revision)
        files = self.repos[(kind, repo)].get(commit)
        if files is None:
            return web.Response(status=404, headers={"X-Error-Code": "RevisionNotFound"}, text="Invalid rev id")
        return commit, files

    def _info(self, kind: str):
        async def info(request: web.Request, commit: str, files: dict[str, bytes]) -> web.StreamResponse:
            repo = f"{request.match_info['owner']}/{request.match_info['name']}"
            return web.json_response({"id": repo, "sha": commit, "private": repo in self.private,
                                      "siblings": [{"rfilename": name} for name in sorted(files)]})
        return self._on_repo(kind, info)

    def _tree(self, kind: str):
        async def tree(request: web.Request, commit: str, files: dict[str, bytes]) -> web.StreamResponse:
            under = request.match_info.get("path", "").strip("/")
            prefix = f"{under}/" if under else ""
            recursive = request.query.get("recursive", "false").lower() == "true"
            entries, folders = [], set()
            for name in sorted(files):
                if not name.startswith(prefix):
                    continue
                rest = name[len(prefix):]
                if "/" in rest and not recursive:
                    folders.add(prefix + rest.split("/")[0])
                    continue
                body = files[name]
                entry = {"type": "file", "oid": hashlib.sha1(body).hexdigest(), "size": len(body), "path": name}
                if name.endswith(LFS_SUFFIXES):
                    entry["lfs"] = {"oid": hashlib.sha256(body).hexdigest(), "size": len(body), "pointerSize": 134}
                entries.append(entry)
            if under and not entries and not folders:
                return web.Response(status=404, headers={"X-Error-Code": "EntryNotFound"}, text="Entry not found")
            entries += [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "path": f}
                        for f in sorted(folders)]
            return web.json_response(entries)
        return self._on_repo(kind, tree)

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        """The file host: a signed URL's bytes (the signature is not checked), with Range and faults."""
        if request.headers.get("Authorization"):
            self.cdn_authorization.append(request.headers["Authorization"])
        body = self.blobs.get(request.match_info["sha256"])
        if body is None or request.query.get("X-Amz-Signature") != self.signature:
            return web.Response(status=403, text="AccessDenied")
        self.cdn_gets += 1
        span = request.http_range
        start, part = span.start or 0, body[span]
        self.cdn_log.append((time.time(), request.match_info["sha256"], start, len(part)))
        fault = self.faults[(self.cdn_gets // self.fault_every) % len(self.faults)] \
            if self.fault_every and self.faults and self.cdn_gets % self.fault_every == 0 else ""
        if fault == "429":
            return web.Response(status=429, headers={"Retry-After": "1"}, text="SlowDown")
        if fault == "500":
            return web.Response(status=500, text="InternalError")
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/zip", "Content-Length": str(len(part))}
        status = 200
        if span.start is not None or span.stop is not None:
            headers["Content-Range"] = f"bytes {start}-{start + len(part) - 1}/{len(body)}"
            status = 206
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if fault in ("reset", "truncated"):
            sent = part[: len(part) // 2]
            await response.write(sent)
            self.cdn_bytes += len(sent)
            sock = request.transport.get_extra_info("socket") if fault == "reset" else None  # type: ignore[union-attr]
            if sock is not None:  # SO_LINGER 0: close() sends a TCP reset
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request.transport.abort() if fault == "reset" else request.transport.close()  # type: ignore[union-attr]
            return response
        chunk = 1 << 16
        for at in range(0, len(part), chunk):
            await response.write(part[at:at + chunk])
            if self.cdn_bytes_per_s:
                await asyncio.sleep(len(part[at:at + chunk]) / self.cdn_bytes_per_s)
        self.cdn_bytes += len(part)
        await response.write_eof()
        return response

    def _resolver(self, kind: str):
        async def resolve(request: web.Request, commit: str, files: dict[str, bytes]) -> web.StreamResponse:
            body = files.get(request.match_info["path"])
            if body is None:
                return web.Response(status=404, headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit},
                                    text="Entry not found")
            sha256 = hashlib.sha256(body).hexdigest()
            headers = {"X-Repo-Commit": commit, "ETag": f'"{sha256}"',
                       "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
            if self.cdn and request.match_info["path"].endswith(LFS_SUFFIXES):
                return web.Response(status=302, headers={
                    "X-Repo-Commit": commit, "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(body)),
                    "Location": f"{self.cdn}/cdn/{sha256}?X-Amz-Expires=3600&X-Amz-Signature={self.signature}"})
            if request.method == "HEAD":
                return web.Response(headers={**headers, "Content-Length": str(len(body))})
            span = request.http_range
            if span.start is not None or span.stop is not None:
                part = body[span]
                start = span.start or 0
                headers["Content-Range"] = f"bytes {start}-{start + len(part) - 1}/{len(body)}"
                return web.Response(status=206, body=part, headers=headers)
            return web.Response(body=body, headers=headers)

        return self._on_repo(kind, resolve)


def point_at(constants: Any, monkeypatch: Any, endpoint: str) -> None:
    """What HF_ENDPOINT does when set before huggingface_hub is imported (it reads it once, then)."""
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
