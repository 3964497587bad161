"""The Starlette application: the JSON API under ``/api``, health, and the built web console.

Thin: take the bearer token and the request apart, call one gRPC method, answer JSON. Every
failure is a JSON error body (``console_service.domain.problems``), never an HTML page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from console_service.domain.problems import Problem, ProblemError, invalid_argument
from console_service.service_layer.api_routes import ROUTES, ApiRoute, build_request, to_json
from console_service.service_layer.dev_login import dev_login_disabled, mint_dev_token, parse_login
from console_service.service_layer.ports import Backends
from console_service.settings import ConsoleSettings

log = logging.getLogger(__name__)

#: The console loads only its own bundled script and styles; the API is same-origin.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
NOT_BUILT = """<!doctype html><html lang="en"><title>Inbox console</title>
<main><h1>Inbox console</h1><p>The web console is not built. Run <code>make setup</code>
(it runs <code>npm ci &amp;&amp; npm run build</code> in services/console/web).</p>
<p>The JSON API is under <code>/api</code>.</p></main></html>"""


def problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(problem.body(), status_code=problem.http_status)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ProblemError(invalid_argument("body", f"not valid JSON: {exc}")) from exc


def api_endpoint(route: ApiRoute, backends: Backends) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await read_json(request) if route.takes_body else None
            message = build_request(
                route,
                path_params={k: str(v) for k, v in request.path_params.items()},
                query=list(request.query_params.multi_items()),
                body=body,
            )
            response = await backends.call(route.service, route.rpc, message, bearer_token(request))
        except ProblemError as exc:
            return problem_response(exc.problem)
        return JSONResponse(to_json(response))

    return endpoint


def create_app(settings: ConsoleSettings, backends: Backends) -> Starlette:
    """The edge over ``backends`` (opened and closed with the app's lifespan)."""

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        backends.open()
        try:
            yield
        finally:
            await backends.close()

    async def config(_request: Request) -> Response:
        return JSONResponse({"dev_mode": settings.dev_mode})

    async def dev_login(request: Request) -> Response:
        if not settings.dev_mode:
            return problem_response(dev_login_disabled())
        try:
            login = parse_login(await read_json(request))
        except ProblemError as exc:
            return problem_response(exc.problem)
        log.info("dev login", extra={"org_id": login.org_id, "agent_id": login.agent_id})
        return JSONResponse(
            mint_dev_token(
                login,
                secret=settings.jwt_secret.get_secret_value(),
                ttl_seconds=settings.dev_token_ttl_seconds,
            )
        )

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        services = await backends.health()
        ready = all(s == "SERVING" for s in services.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "services": services},
            status_code=200 if ready else 503,
        )

    async def unknown_api(request: Request) -> Response:
        return problem_response(
            Problem("NOT_FOUND", f"no API route {request.method} {request.url.path}")
        )

    routes: list[BaseRoute] = [
        Route(r.path, api_endpoint(r, backends), methods=[r.method], name=f"{r.service}.{r.rpc}")
        for r in ROUTES
    ]
    routes += [
        Route("/api/config", config, methods=["GET"]),
        Route("/api/dev/login", dev_login, methods=["POST"]),
        Route("/api/{rest:path}", unknown_api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    static = static_dir(settings)
    if static is not None:
        routes.append(Mount("/", StaticFiles(directory=static, html=True), name="console"))
    else:

        async def not_built(_request: Request) -> Response:
            return HTMLResponse(NOT_BUILT)

        routes.append(Route("/", not_built, methods=["GET"]))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "NOT_FOUND", 405: "UNIMPLEMENTED"}.get(exc.status_code, "INVALID_ARGUMENT")
        problem = Problem(code, str(exc.detail))
        return JSONResponse(problem.body(), status_code=exc.status_code)

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: http_error},
    )


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path.startswith("/api/"):
            response.headers["cache-control"] = "no-store"
        return response


def static_dir(settings: ConsoleSettings) -> Path | None:
    """The built console: ``CONSOLE_STATIC_DIR``, or ``services/console/web/dist``."""
    if settings.static_dir:
        candidate = Path(settings.static_dir)
    else:
        candidate = Path(__file__).resolve().parents[3] / "web" / "dist"
    return candidate if (candidate / "index.html").is_file() else None
