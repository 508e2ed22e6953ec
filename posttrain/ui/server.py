"""The dashboard's HTTP app (FastAPI on Starlette) and how `posttrain ui` runs it (uvicorn).

Bound to 127.0.0.1 unless `--host` says otherwise; then every request must carry the token
printed at start (`?token=` once, which sets a cookie, or the `X-Posttrain-Token` header).
Requests name runs, stages and recipes by plain names resolved inside the runs and recipes
folders (files.py); nothing a request sends is run as code: a recipe is started only as
`posttrain run <file inside the recipes folder>`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from posttrain.errors import UserError
from posttrain.ui import views
from posttrain.ui.chat import ModelPool, Settings, model_choices
from posttrain.ui.files import check_name, inside, not_found
from posttrain.ui.jobs import Jobs, recipe_files, validate
from posttrain.ui.runs import run_dirs, run_status

STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_COOKIE = "posttrain_token"
PAGES = {"runs": "Runs", "board": "Board", "run": "Report", "compare": "Compare", "chat": "Chat"}


class Message(BaseModel):
    role: str = Field(pattern="^(system|user|assistant)$")
    content: str = Field(max_length=20_000)


class ChatRequest(BaseModel):
    model: str = Field(max_length=400)
    messages: list[Message] = Field(min_length=1, max_length=100)
    settings: dict[str, Any] = Field(default_factory=dict)


class RecipeRequest(BaseModel):
    path: str = Field(max_length=1000)


def _shell(page: str, run: str = "") -> str:
    """Every page is this shell; static/app.js draws the page its `data-page` names."""
    nav = "".join(f'<a href="{href}" class="{"here" if key == page else ""}">{label}</a>'
                  for key, label, href in (("runs", "Runs", "/"), ("board", "Board", "/board"),
                                           ("compare", "Compare", "/compare"), ("chat", "Chat", "/chat")))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>posttrain · {PAGES[page]}</title>'
            '<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/app.css"></head>'
            f'<body><header><b>posttrain</b><nav>{nav}</nav></header>'
            f'<main id="app" data-page="{page}" data-run="{run}"></main><script src="/static/app.js"></script>'
            '</body></html>')


def create_app(runs_dir: Path, recipes_dir: Path, *, token: str | None = None, loopback: bool = True,
               idle_s: float = 600.0) -> FastAPI:
    """The dashboard over `runs_dir` (run directories) and `recipes_dir` (recipe files it may start)."""
    runs_dir, recipes_dir = runs_dir.resolve(), recipes_dir.resolve()
    jobs = Jobs(runs_dir, recipes_dir)
    pool = ModelPool(runs_dir, idle_s=idle_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(jobs.close)
        await asyncio.to_thread(pool.close)

    app = FastAPI(title="posttrain ui", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.jobs, app.state.pool = jobs, pool
    if loopback:  # a page on another site cannot reach us through a DNS name pointed at 127.0.0.1
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if token is not None:
            given = (request.headers.get("x-posttrain-token") or request.query_params.get("token")
                     or request.cookies.get(TOKEN_COOKIE) or "")
            if not secrets.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "this dashboard needs the token printed when it started"}, 403)
        if request.method == "POST" and not request.headers.get("content-type", "").startswith("application/json"):
            # Only JSON posts: a form on another site cannot send one without the browser asking us first.
            return JSONResponse({"error": "send JSON"}, 415)
        response = await call_next(request)
        if token is not None and request.query_params.get("token") == token:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(UserError)
    async def user_error(_: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"error": exc.render()}, 400)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    for page, path in (("runs", "/"), ("board", "/board"), ("compare", "/compare"), ("chat", "/chat")):
        app.add_api_route(path, lambda page=page: HTMLResponse(_shell(page)), methods=["GET"])

    def run_root(name: str) -> Path:
        root = inside(runs_dir, check_name(name))
        if root not in run_dirs(runs_dir):
            raise not_found("no such run")
        return root

    @app.get("/runs/{name}")
    def run_page(name: str) -> HTMLResponse:
        return HTMLResponse(_shell("run", run_root(name).name))

    @app.get("/files/{path:path}")
    def files(path: str) -> FileResponse:
        target = inside(runs_dir, path)
        if not target.is_file():
            raise not_found()
        return FileResponse(target)

    @app.get("/api/runs")
    def runs() -> list[dict[str, Any]]:
        return [run_status(r) for r in run_dirs(runs_dir)]

    @app.get("/api/runs/{name}")
    def one_run(name: str) -> dict[str, Any]:
        return run_status(run_root(name))

    def page_url(page: Path) -> dict[str, str]:
        return {"url": "/files/" + page.relative_to(runs_dir).as_posix()}

    @app.get("/api/runs/{name}/report")
    def report(name: str) -> dict[str, str]:
        return page_url(views.report_page(run_root(name)))

    @app.get("/api/board")
    def board() -> dict[str, str]:
        return page_url(views.board_page(runs_dir))

    @app.get("/api/compare")
    def compare(a: str, b: str) -> dict[str, str]:
        return page_url(views.compare_page(runs_dir, run_root(a), run_root(b)))

    @app.get("/api/models")
    def models() -> dict[str, Any]:
        return {"models": model_choices(runs_dir, run_dirs(runs_dir)), "loaded": pool.loaded(),
                "settings": Settings().__dict__, "idle_unload_s": idle_s, "max_loaded": pool.max_loaded}

    @app.post("/api/chat")
    def chat(body: ChatRequest) -> StreamingResponse:
        settings = Settings.parse(body.settings)
        pool.check(body.model)  # an unknown model is a 404 now, not an error inside a 200 stream
        messages = [m.model_dump() for m in body.messages]
        return StreamingResponse(_chat_events(pool, body.model, messages, settings), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @app.get("/api/recipes")
    def recipes() -> dict[str, Any]:
        return {"folder": str(recipes_dir), "recipes": recipe_files(recipes_dir)}

    def recipe_path(path: str) -> Path:
        target = inside(recipes_dir, path)
        if not target.is_file() or target.suffix not in (".yaml", ".yml"):
            raise not_found("no such recipe")
        return target

    @app.get("/api/recipes/validate")
    def validate_recipe(path: str) -> dict[str, Any]:
        return validate(recipe_path(path))

    @app.post("/api/recipes/start")
    def start(body: RecipeRequest) -> dict[str, Any]:
        recipe = recipe_path(body.path)
        try:
            return jobs.start(recipe, body.path).to_json()
        except UserError as exc:
            raise HTTPException(409, exc.render()) from None

    @app.post("/api/runs/{name}/stop")
    def stop(name: str) -> dict[str, Any]:
        try:
            return jobs.stop(check_name(name)).to_json()
        except UserError as exc:
            raise HTTPException(409, exc.render()) from None

    @app.get("/api/jobs")
    def job_list() -> list[dict[str, Any]]:
        return jobs.listing()

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, exc.status_code)

    return app


def _event(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


def _chat_events(pool: ModelPool, model_id: str, messages: list[dict[str, str]], settings: Settings) -> Iterator[str]:
    """Server-sent events: `meta` (engine, chat template, rendered prompt, settings), `token`s, then `done`."""
    try:
        yield _event("status", {"text": f"loading {model_id}" if model_id not in pool.loaded() else "generating"})
        model = pool.get(model_id)
        yield _event("meta", {**model.describe(messages), "settings": settings.__dict__, "model": model_id})
        for text in model.stream(messages, settings):
            yield _event("token", {"text": text})
        pool.touch(model_id)
        yield _event("done", {})
    except UserError as exc:
        yield _event("error", {"error": exc.render()})
    except Exception as exc:  # the page shows one line; the server keeps serving
        yield _event("error", {"error": f"{type(exc).__name__}: {exc}"})


def serve(runs_dir: Path, recipes_dir: Path, *, host: str = "127.0.0.1", port: int = 8470,
          announce: Any = print) -> None:
    """Run the dashboard until Ctrl-C; off loopback, with a one-time token announced with the URL."""
    import socket

    import uvicorn

    try:  # one clear message for a taken port or an address this machine does not have
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port or --host") from None

    loopback = host in LOOPBACK
    token = None if loopback else secrets.token_urlsafe(24)
    app = create_app(runs_dir, recipes_dir, token=token, loopback=loopback)
    shown = f"[{host}]" if ":" in host else host
    announce(f"posttrain ui: http://{shown}:{port}/" + (f"?token={token}" if token else "")
             + f"  (runs {runs_dir.resolve()}, recipes {recipes_dir.resolve()}; Ctrl-C stops)")
    if token:
        announce(f"token (every request must carry it): {token}")
    uvicorn.run(app, host=host, port=port, log_level="warning")
