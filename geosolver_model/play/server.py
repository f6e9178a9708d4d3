"""`geosolver play`: a local web page to play GeoGuessr against the model, explore its guesses for your own
photos, and look through its errors. aiohttp's web server (already how ingest fetches: one well-kept
async framework, no new dependency) serves a JSON API and the page's own files; the basemap and its
one JS helper are vendored from the npm registry, so the page fetches nothing beyond 127.0.0.1.

Read-only: uploads are size-capped, decoded in memory by ingest's safe image path and never written.
Model calls run in a worker thread so one slow upload does not stall the page for everyone else.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from geosolver_model.play.game import Game, Games
from geosolver_model.play.library import Library, NotPlayable

STATIC = Path(str(resources.files("geosolver_model.play") / "static"))


@dataclass(frozen=True)
class PlaySettings:
    host: str = "127.0.0.1"
    port: int = 8765
    max_upload_mb: float = 10.0
    top_k: int = 5
    seed: int | None = None  # rounds drawn reproducibly (tests); None: a different game each time


LIBRARY = web.AppKey("library", Library)
GAMES = web.AppKey("games", Games)
SETTINGS = web.AppKey("settings", PlaySettings)


def _json_error(status: type[web.HTTPException], message: str) -> web.HTTPException:
    return status(text=json.dumps({"error": message}), content_type="application/json")


# The page's own files and the API only: no inline script or style, nothing from another origin. A string
# that slipped into the page as markup still could not run.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


MAX_JSON_BYTES = 65_536  # a guess is two numbers


async def _json_object(request: web.Request) -> dict:
    """The request's JSON object, or 400 with the reason: not JSON, not UTF-8, too large, too deep, not an object."""
    raw = await request.content.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise _json_error(web.HTTPBadRequest, f"a JSON body of at most {MAX_JSON_BYTES} bytes")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: bad JSON, 5000-digit ints
        raise _json_error(web.HTTPBadRequest, f"the body is not JSON in UTF-8: {str(exc)[:120]}") from None
    if not isinstance(body, dict):
        raise _json_error(web.HTTPBadRequest, "the body must be a JSON object")
    return body


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def info(request: web.Request) -> web.Response:
    library = request.app[LIBRARY]
    settings = request.app[SETTINGS]
    return web.json_response({"versions": library.versions, "test_images": len(library.test_ids),
                              "rows": library.rows.meta.num_rows, "top_k": settings.top_k,
                              "max_upload_mb": settings.max_upload_mb})


async def new_game(request: web.Request) -> web.Response:
    game = request.app[GAMES].new()
    return web.json_response({"game": game.id, "rounds": len(game.images)})


def _game(request: web.Request) -> Game:
    try:
        return request.app[GAMES].get(request.match_info["game"])
    except KeyError:
        raise _json_error(web.HTTPNotFound, "no such game (the server was restarted?): start a new one") from None


async def round_image(request: web.Request) -> web.Response:
    """The current round's photo, by game and round: the URL says nothing about where it was taken."""
    game = _game(request)
    number = int(request.match_info["round"])
    if not 1 <= number <= len(game.images):
        raise _json_error(web.HTTPNotFound, f"round {number} is not in this game")
    data = request.app[LIBRARY].rows.image_bytes(game.images[number - 1])
    return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def guess(request: web.Request) -> web.Response:
    """One guess per round: a second one for the same round, while the first is scored or after, gets 409."""
    game = _game(request)
    body = await _json_object(request)
    try:
        lat, lon = float(body["lat"]), float(body["lon"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise _json_error(web.HTTPBadRequest, "a guess is {lat, lon} in degrees") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise _json_error(web.HTTPBadRequest, f"({lat}, {lon}) is not a place on Earth")
    if game.pending or game.round >= len(game.images):
        raise _json_error(web.HTTPConflict, "this round is being scored" if game.pending else
                          "this game is over: start a new one")
    if "round" in body and body["round"] != game.round + 1:
        raise _json_error(web.HTTPConflict, f"round {body['round']!r} is not the current round ({game.round + 1})")
    library = request.app[LIBRARY]
    image_id = game.images[game.round]
    game.pending = True  # checked and set with no await between: the event loop runs one handler at a time
    try:
        model = await asyncio.to_thread(library.model_guess, image_id)
        return web.json_response(game.guess(library.rows.row(image_id), (lat, lon), model))
    finally:
        game.pending = False


async def explore(request: web.Request) -> web.Response:
    """A dropped photo's top-k candidates and its nearest reference images (with attribution)."""
    library = request.app[LIBRARY]
    try:
        form = await request.post()
    except (ValueError, AssertionError, HttpProcessingError) as exc:  # a malformed multipart or urlencoded body
        raise _json_error(web.HTTPBadRequest, f"send the photo as a multipart form: {str(exc)[:120]}") from None
    photo = form.get("photo")
    if not isinstance(photo, web.FileField):
        raise _json_error(web.HTTPBadRequest, "send the photo as the multipart field `photo`")
    data = photo.file.read()
    try:
        found = await asyncio.to_thread(library.locate_upload, data, request.app[SETTINGS].top_k)
    except ValueError as exc:
        raise _json_error(web.HTTPUnprocessableEntity, str(exc).replace("(bytes)", photo.filename or "upload")) \
            from None
    neighbours = []
    for n in found["neighbours"]:
        row = library.rows.row(n["image_id"])
        neighbours.append({**n, **{k: row[k] for k in ("lat", "lon", "country", "license", "creator", "source")},
                           "thumb": f"/api/thumb/{quote(n['image_id'], safe='')}"})
    return web.json_response({"candidates": found["candidates"], "neighbours": neighbours,
                              "place": found["candidates"][0] if found["candidates"] else None,
                              "versions": library.versions})


async def thumb(request: web.Request) -> web.Response:
    library = request.app[LIBRARY]
    image_id = request.match_info["image_id"]
    if image_id not in library.rows.by_id or image_id in library.test_set:
        raise _json_error(web.HTTPNotFound, f"no reference image {image_id}")
    data = await asyncio.to_thread(library.thumbnail, image_id)
    return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})


async def errors(request: web.Request) -> web.Response:
    library = request.app[LIBRARY]
    try:
        found = await asyncio.to_thread(library.errors, request.query.get("comparator") or None,
                                        request.query.get("country") or None)
    except NotPlayable as exc:
        raise _json_error(web.HTTPNotFound, str(exc)) from None
    return web.json_response(found)


async def test_image(request: web.Request) -> web.Response:
    """A test image of the errors view (once evaluated, a test image's place is no secret)."""
    library = request.app[LIBRARY]
    image_id = request.match_info["image_id"]
    if image_id not in library.test_set:
        raise _json_error(web.HTTPNotFound, f"no test image {image_id}")
    data = await asyncio.to_thread(library.rows.image_bytes, image_id)
    return web.Response(body=data, content_type="image/jpeg")


def make_app(library: Library, settings: PlaySettings) -> web.Application:
    app = web.Application(client_max_size=int(settings.max_upload_mb * 1024 * 1024))
    app.on_response_prepare.append(_secure)
    app[LIBRARY] = library
    app[GAMES] = Games(library.test_ids, settings.seed)
    app[SETTINGS] = settings
    app.router.add_get("/", index)
    app.router.add_get("/api/info", info)
    app.router.add_post("/api/games", new_game)
    app.router.add_get("/api/games/{game}/rounds/{round:\\d+}/image", round_image)
    app.router.add_post("/api/games/{game}/guess", guess)
    app.router.add_post("/api/explore", explore)
    app.router.add_get("/api/thumb/{image_id:.+}", thumb)  # image ids may hold slashes
    app.router.add_get("/api/errors", errors)
    app.router.add_get("/api/test-image/{image_id:.+}", test_image)
    app.router.add_static("/static/", STATIC)
    return app


async def serve(library: Library, settings: PlaySettings) -> None:
    """Serve until SIGINT or SIGTERM (then within about a second); print the address once the socket is bound
    (port 0: any free port)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(make_app(library, settings), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"geosolver play: http://{host}:{port}/  (model {library.versions['model']}, "
          f"index {library.versions['index']}, dataset {library.versions['dataset']}; Ctrl-C stops)", flush=True)
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"geosolver play: listening on {settings.host}: anyone who can reach this machine can use it",
              file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
