"""The HTTP API and the drop-a-picture page: one more intake of the daemon's pipeline.

An upload is checked (size before the body is read whole, then the decoder's own limits), kept
under `[api] upload_dir` named by its content hash, and handed to the writer as a `ScreenNow`
task: it is screened in the same batches as inbox files, by the same model, stored by the same
writer, and answered when its verdict is stored. `?store=false` answers from the model in
service without keeping anything. uvicorn runs in a thread of its own and stops with the daemon.

Safe by default: loopback only unless a token file is configured (compared in constant time);
a full queue answers 503 with Retry-After; CORS is off unless origins are listed; every bad
request gets a JSON error and nothing is stored for it.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final

import uvicorn
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from python_multipart.multipart import MultipartParser, parse_options_header

from detector.atomic import write_atomic
from detector.decision import decide
from detector.errors import ImageRejected
from detector.imageio import LoadLimits, decode_picture, sha256_bytes
from detector.provenance import read_provenance, summarize
from storage import queries
from storage.db import Database
from storage.queries import NotFound
from watcher.labelling import LabelTargetError, record_label
from watcher.messages import ORIGIN_API, Discovered, ScreenNow, Verdict
from watcher.metrics import ServiceMetrics
from watcher.pipeline import Pipeline
from watcher.settings import Settings

logger = logging.getLogger(__name__)

NextHandler = Callable[[Request], Awaitable[Response]]

API_VERSION: Final[str] = "v1"
RETRY_AFTER_S: Final[int] = 5
_EXTENSIONS: Final[dict[str, str]] = {
    "JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif",
    "AVIF": "avif", "HEIF": "heic",
}  # fmt: skip


class ApiConfigError(ValueError):
    """The [api] settings cannot be served safely (e.g. a public address without a token)."""


class ApiProblem(Exception):
    """A request answered with a JSON error: status, short code, clear message."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


def listen_address(listen: str) -> tuple[str, int]:
    """(host, port) of `HOST:PORT` (IPv6 hosts in brackets)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ApiConfigError(f"[api] listen must be HOST:PORT, not {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(settings: Settings) -> str | None:
    """The bearer token, or None for a loopback address without one; ApiConfigError when a
    non-loopback address has no (usable) token file."""
    cfg = settings.api
    host, _ = listen_address(cfg.listen)
    token = None
    if cfg.token_file is not None:
        try:
            token = cfg.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ApiConfigError(f"[api] token_file {cfg.token_file}: {exc.strerror}") from exc
        if len(token) < 16:
            raise ApiConfigError(f"[api] token_file {cfg.token_file} holds no token of 16+ chars")
    if token is None and not is_loopback(host):
        raise ApiConfigError(
            f"[api] listen = {cfg.listen!r} is not a loopback address: set [api] token_file"
        )
    return token


class Slots:
    """At most `size` requests waiting for a verdict at once (the rest are answered 503)."""

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._size, self.in_use = size, 0

    def acquire(self) -> bool:
        """Take a slot; False when none is free."""
        with self._lock:
            if self.in_use >= self._size:
                return False
            self.in_use += 1
            return True

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            self.in_use -= 1


@dataclass
class ApiContext:
    """What the routes use of the running daemon."""

    settings: Settings
    db: Database
    pipeline: Pipeline
    metrics: ServiceMetrics
    token: str | None
    pending: Slots


def create_app(ctx: ApiContext) -> FastAPI:
    """The ASGI application: versioned routes, the page, the reports, health and metrics."""
    app = FastAPI(
        title="deepfake-detector",
        version=API_VERSION,
        docs_url=None,  # the stock page loads scripts from a CDN; ours works offline
        redoc_url=None,
    )
    if ctx.settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(ctx.settings.api.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.middleware("http")
    async def guard(request: Request, call_next: NextHandler) -> Response:
        if ctx.token is not None and request.url.path not in ("/healthz",):
            sent = request.headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {ctx.token}".encode()):
                return _error(ApiProblem(401, "unauthorized", "send Authorization: Bearer <token>"))
        try:
            return await call_next(request)
        except ApiProblem as problem:
            return _error(problem)

    _routes(app, ctx)
    reports = ctx.settings.reports.dir
    reports.mkdir(parents=True, exist_ok=True)
    app.mount("/reports", StaticFiles(directory=reports, html=True), name="reports")
    return app


def _error(problem: ApiProblem) -> JSONResponse:
    headers = {"Retry-After": str(problem.retry_after)} if problem.retry_after else None
    body = {"error": problem.code, "message": problem.message}
    return JSONResponse(body, status_code=problem.status, headers=headers)


def _routes(app: FastAPI, ctx: ApiContext) -> None:
    @app.post(f"/{API_VERSION}/screen")
    async def screen(request: Request, store: bool = True) -> JSONResponse:
        """Screen one picture (multipart field `file`, or the raw body); its verdict."""
        started = time.perf_counter()
        data = await _read_upload(request, ctx.settings.detector.max_file_bytes)
        limits = LoadLimits(ctx.settings.detector.max_file_bytes, ctx.settings.detector.max_pixels)
        fmt = await asyncio.to_thread(_check_picture, data, limits)
        if not store:
            body = await asyncio.to_thread(_score_unstored, ctx, data, limits)
        else:
            verdict = await _screen_stored(ctx, data, fmt)
            body = _verdict_json(verdict)
        ctx.metrics.request_seconds.observe(time.perf_counter() - started)
        return JSONResponse(body)

    @app.get(f"/{API_VERSION}/verdicts")
    def verdicts(
        label: str | None = None,
        status: str | None = None,
        origin: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> JSONResponse:
        """Stored verdicts, newest first (the filters of the `verdicts` command), paginated."""
        if not 1 <= limit <= 1000 or offset < 0:
            raise ApiProblem(422, "bad_page", "limit must be 1-1000 and offset 0 or more")
        try:
            with ctx.db.session() as s:
                rows = queries.list_verdicts(
                    s, label=label, status=status, origin=origin, since=since,
                    limit=limit, offset=offset,
                )  # fmt: skip
        except ValueError as exc:
            raise ApiProblem(422, "bad_filter", str(exc)) from exc
        items = [{**row.to_dict(), "location": row.location} for row in rows]
        more = len(items) == limit
        return JSONResponse(
            {
                "items": items,
                "limit": limit,
                "offset": offset,
                "next_offset": offset + limit if more else None,
            }
        )

    @app.get(f"/{API_VERSION}/verdicts/{{sha256}}")
    def verdict(sha256: str) -> JSONResponse:
        """The newest verdict of this content."""
        with ctx.db.session() as s:
            rows = queries.list_verdicts(s, sha256=sha256.lower(), limit=1)
        if not rows:
            raise ApiProblem(404, "not_found", f"no verdict for SHA-256 {sha256}")
        return JSONResponse({**rows[0].to_dict(), "location": rows[0].location})

    @app.post(f"/{API_VERSION}/labels")
    async def label(request: Request) -> JSONResponse:
        """Record a human correction: {"image": SHA256 or path, "label": "real"|"ai", "note"}."""
        try:
            body = await request.json()
        except ValueError as exc:
            raise ApiProblem(400, "bad_json", "the body must be a JSON object") from exc
        if not isinstance(body, dict) or body.get("label") not in ("real", "ai"):
            raise ApiProblem(
                422, "bad_label", 'send {"image": SHA256 or path, "label": "real" or "ai"}'
            )
        image, note = str(body.get("image", "")), str(body.get("note", ""))
        try:
            message = ctx.db.retrying(
                lambda s: record_label(s, image, body["label"], note, ctx.settings)
            )
        except (LabelTargetError, NotFound) as exc:
            raise ApiProblem(404, "not_found", str(exc)) from exc
        return JSONResponse({"message": message})

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """Model loaded, database reachable, queue depth."""
        try:
            with ctx.db.session() as s:
                queries.ping(s)
            database = "ok"
        except Exception as exc:  # reported, not raised: this is what health checks are for
            database = f"unreachable: {type(exc).__name__}"
        active = ctx.pipeline.slot.active
        body = {
            "model": active.classifier.version,
            "database": database,
            "queue_depth": ctx.pipeline.writer.in_flight,
            "requests_waiting": ctx.pending.in_use,
        }
        return JSONResponse(body, status_code=200 if database == "ok" else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        """The daemon's figures, Prometheus text format."""
        return Response(ctx.metrics.text(), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        """The drop-a-picture page (self-contained: no external script, font or style)."""
        return HTMLResponse(_asset("api_page.html"))

    @app.get("/docs", response_class=HTMLResponse)
    def docs() -> HTMLResponse:
        """The API's routes from its OpenAPI schema, as a page that works offline."""
        return HTMLResponse(_docs_page(app.openapi()))


async def _read_upload(request: Request, max_bytes: int) -> bytes:
    """The picture's bytes, never more than max_bytes read (checked before reading whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + 65536:
        raise ApiProblem(
            413, "too_large", f"the body is {int(declared):,} bytes, more than {max_bytes:,}"
        )
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes + 65536:  # multipart framing on top of the picture
            raise _too_large("the body is larger", max_bytes)
    content_type = request.headers.get("content-type", "")
    data = (
        _multipart_file(bytes(body), content_type)
        if content_type.startswith("multipart/")
        else bytes(body)
    )
    if not data:
        raise ApiProblem(
            400, "empty", "no picture in the request (send the bytes, or a `file` field)"
        )
    if len(data) > max_bytes:
        raise ApiProblem(
            413, "too_large", f"the picture is {len(data):,} bytes, more than {max_bytes:,}"
        )
    return data


def _too_large(what: str, max_bytes: int) -> ApiProblem:
    return ApiProblem(413, "too_large", f"{what}, more than the limit of {max_bytes:,} bytes")


def _busy(why: str, code: str = "busy") -> ApiProblem:
    return ApiProblem(503, code, f"{why}; try again", RETRY_AFTER_S)


def _multipart_file(body: bytes, content_type: str) -> bytes:
    """The first file part of a multipart/form-data body, parsed in memory."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiProblem(400, "bad_multipart", "multipart body without a boundary")
    parts: list[bytearray] = []
    current: dict[str, Any] = {"data": None, "header": b"", "is_file": False}

    def on_header_value(data: bytes, start: int, end: int) -> None:
        current["header"] += data[start:end]

    def on_headers_finished() -> None:
        current["is_file"] = (
            b"filename=" in current["header"] or b'name="file"' in current["header"]
        )
        current["data"] = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if current["data"] is not None:
            current["data"].extend(data[start:end])

    def on_part_end() -> None:
        if current["is_file"] and current["data"] is not None:
            parts.append(current["data"])
        current.update(data=None, header=b"", is_file=False)

    parser = MultipartParser(
        boundary,
        {
            "on_header_value": on_header_value,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart's own errors: a malformed body
        raise ApiProblem(400, "bad_multipart", f"malformed multipart body: {exc}") from exc
    if not parts:
        raise ApiProblem(400, "no_file", "the multipart body has no file part (`file`)")
    return bytes(parts[0])


def _check_picture(data: bytes, limits: LoadLimits) -> str:
    """The picture's format; ApiProblem (nothing stored) for anything the decoder rejects."""
    try:
        return decode_picture(data, None, limits).format
    except ImageRejected as exc:
        status = 413 if exc.code in ("too_large", "too_many_pixels") else 422
        raise ApiProblem(status, exc.code, exc.reason) from exc


async def _screen_stored(ctx: ApiContext, data: bytes, fmt: str) -> Verdict:
    """Keep the upload by its hash, screen it through the pipeline, wait for its verdict."""
    if not ctx.pending.acquire():
        raise _busy("too many pictures waiting")
    try:
        path = await asyncio.to_thread(_keep_upload, ctx.settings.api.upload_dir, data, fmt)
        st = path.stat()
        task = ScreenNow(Discovered(str(path), st.st_size, st.st_mtime_ns, ORIGIN_API))
        try:
            ctx.pipeline.tasks.put_nowait(task)
        except Exception as exc:  # queue.Full: the pipeline is saturated
            raise ApiProblem(
                503, "busy", "the screening queue is full; try again", RETRY_AFTER_S
            ) from exc
        try:
            return await asyncio.wait_for(
                asyncio.wrap_future(task.reply), ctx.settings.api.timeout_s
            )
        except (TimeoutError, RuntimeError) as exc:
            raise ApiProblem(
                503,
                "not_screened",
                f"no verdict yet ({exc or 'timed out'}); try again",
                RETRY_AFTER_S,
            ) from exc
    finally:
        ctx.pending.release()


def _keep_upload(folder: Path, data: bytes, fmt: str) -> Path:
    """The upload under `folder`, named by its SHA-256 (the same bytes: the same file)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{sha256_bytes(data)}.{_EXTENSIONS.get(fmt, 'img')}"
    if not path.exists():
        write_atomic(path, data, mode=0o600)
    return path


def _score_unstored(ctx: ApiContext, data: bytes, limits: LoadLimits) -> dict[str, Any]:
    """The verdict from the model in service, nothing stored (`?store=false`)."""
    started = time.perf_counter()
    classifier = ctx.pipeline.slot.active.classifier
    views = classifier.spec.decode(data, limits)
    findings = read_provenance(data) if ctx.settings.detector.provenance else ()
    decoded = time.perf_counter()
    picture = classifier.score_pictures([views])[0]
    decision = decide(picture.score, classifier.threshold, classifier.band, findings)
    verdict = Verdict(
        file_id=0, path="", sha256=sha256_bytes(data), status="classified",
        label=decision.label.value, score=picture.score, model_version=classifier.version,
        reason=None, created_at=None, decided_by=decision.decided_by.value,
        evidence=summarize(findings), whole_score=picture.whole_score, faces=picture.faces,
        decode_ms=1000 * (decoded - started), infer_ms=1000 * (time.perf_counter() - decoded),
    )  # fmt: skip
    body = _verdict_json(verdict)
    body["stored"] = False
    return body


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {
        **verdict.to_json_dict(),
        "timings": {"decode_ms": verdict.decode_ms, "infer_ms": verdict.infer_ms},
        "stored": True,
    }


def _asset(name: str) -> str:
    return resources.files("watcher").joinpath(name).read_text(encoding="utf-8")


def _docs_page(schema: dict[str, Any]) -> str:
    """Each route with its summary and parameters; the schema itself is at /openapi.json."""
    from html import escape

    rows = []
    for path, methods in sorted(schema.get("paths", {}).items()):
        for method, op in methods.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []))
            rows.append(
                f"<tr><td><code>{escape(method.upper())} {escape(path)}</code></td>"
                f"<td>{escape(op.get('description') or op.get('summary') or '')}</td>"
                f"<td>{escape(params)}</td></tr>"
            )
    return _asset("api_docs.html").replace("{{rows}}", "\n".join(rows))


class ApiServer(threading.Thread):
    """uvicorn in a thread of its own; `stop()` ends it (should_exit), like the other threads."""

    def __init__(self, ctx: ApiContext) -> None:
        super().__init__(name="api", daemon=True)
        host, port = listen_address(ctx.settings.api.listen)
        config = uvicorn.Config(
            create_app(ctx), host=host, port=port, log_config=None, access_log=False,
            lifespan="off", timeout_graceful_shutdown=5,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.address = f"http://{ctx.settings.api.listen}"

    def run(self) -> None:
        """Serve until stopped; a port already taken is logged and the daemon goes on."""
        try:
            self.server.run()
        except SystemExit:  # uvicorn exits when it cannot bind
            logger.error(
                "the HTTP API could not listen on %s; screening goes on without it", self.address
            )
        except Exception:
            logger.exception("the HTTP API stopped; screening goes on without it")

    def started_ok(self, timeout_s: float = 10.0) -> bool:
        """Wait until the server listens (True) or gave up (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.is_alive():
            if self.server.started:
                return True
            time.sleep(0.02)
        return bool(self.server.started)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop accepting requests and join."""
        self.server.should_exit = True
        self.join(timeout_s)
