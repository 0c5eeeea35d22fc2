"""The dashboard's HTTP endpoints (see dashboard/README.md for what each page shows).

  GET /                      the page of users with an active alert (static shell + JS)
  GET /users/<user_id>       one user's live page (static shell + JS)
  GET /static/<file>         the pages' JS and CSS (shipped in the package; nothing external)
  GET /api/alerts            JSON: active alerts the caller may read, newest first, newest bpm
  GET /api/users/<user_id>   JSON: alert state, thresholds, newest reading, readings of the
                             last hour (?since_ms= for those from then on), today's zones
                             (?day_start_ms= the viewer's midnight)

The pages carry no data and need no token; the JSON endpoints take the same bearer tokens as the
gRPC service (`Authorization: Bearer <jwt>`) when AUTH_MODE=jwt: 401 without a valid one, 403
without the read right. Errors are JSON {"error": ..., "status": ...}; an unexpected one is
logged and answered 500, never raised to Serve.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from heartrate_serve.core.errors import (
    CorruptData,
    DeadlineExceeded,
    DependencyUnavailable,
    HttpError,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    StoreUnavailable,
    Unauthenticated,
)
from heartrate_serve.core.validation import canonical_user_id
from heartrate_serve.dashboard.router import Router, error_response
from heartrate_serve.dashboard.views import alerts_body, user_body
from heartrate_serve.service.auth import Authenticator
from heartrate_serve.service.dashboard_reads import DashboardReads
from heartrate_serve.service.service import HeartRateService, now_ms
from heartrate_serve.store.alert_board import AlertBoard
from heartrate_serve.store.store import ReadingStore

log = logging.getLogger("heartrate_serve.dashboard")

# Active alerts listed at most (the newest); the JSON says how many there are in all.
MAX_LISTED = 500
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Same origin only, no inline script, not framed; tokens never leave in a Referer.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class StaticFile:
    """A file of dashboard/static, read once."""

    body: bytes
    media_type: str


def load_static() -> dict[str, StaticFile]:
    """Every file of the package's static folder, by name."""
    folder = resources.files("heartrate_serve.dashboard") / "static"
    files = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _TYPES:
            files[entry.name] = StaticFile(entry.read_bytes(), _TYPES[suffix])
    return files


def _status_of(error: Exception) -> tuple[int, dict[str, str]]:
    """The HTTP status (and headers) for a domain error; 500 for anything else."""
    if isinstance(error, InvalidRequest):
        return 400, {}
    if isinstance(error, Unauthenticated):
        return 401, {"WWW-Authenticate": 'Bearer realm="heartrate"'}
    if isinstance(error, PermissionDenied):
        return 403, {}
    if isinstance(error, NotFound):
        return 404, {}
    if isinstance(error, StoreUnavailable | DependencyUnavailable | Overloaded):
        return 503, {"Retry-After": "1"}
    if isinstance(error, DeadlineExceeded):
        return 504, {}
    return 500, {}


def _int_param(request: Request, name: str) -> int | None:
    """An optional integer query parameter; InvalidRequest naming it when it is not one."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(name, f"{name} must be an integer (Unix ms)") from None


class Dashboard:
    """Answers the HTTP requests of the Serve application (HeartRateIngress.__call__)."""

    def __init__(
        self,
        reads: DashboardReads,
        board: AlertBoard,
        clock_ms: Callable[[], int] = now_ms,
        max_listed: int = MAX_LISTED,
    ) -> None:
        self._reads = reads
        self._board = board
        self._clock_ms = clock_ms
        self._max_listed = max_listed
        self._static = load_static()
        self.router = Router()
        self.router.get("/")(self._index)
        self.router.get("/users/{user_id}")(self._user_page)
        self.router.get("/static/{name}")(self._static_file)
        self.router.get("/api/alerts")(self._alerts)
        self.router.get("/api/users/{user_id}")(self._user)

    @classmethod
    def build(
        cls, service: HeartRateService, store: ReadingStore, auth: Authenticator | None
    ) -> Dashboard:
        """The dashboard of an ingress replica: the replica's service core, store and tokens."""
        return cls(DashboardReads(service, store, auth), AlertBoard(store))

    async def handle(self, request: Request) -> Response:
        """The response to one HTTP request (never raises)."""
        root = _root(request)
        path = str(request.scope.get("path", "/") or "/")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        try:
            response = await self.router.dispatch(request, path)
        except Exception as error:
            response = self._error(error, path, root)
        response.headers.update(SECURITY_HEADERS)
        return response

    def _error(self, error: Exception, path: str, root: str) -> Response:
        if isinstance(error, HttpError):
            failure = error
        else:
            status, headers = _status_of(error)
            if status == 500 and not isinstance(error, CorruptData):
                log.exception("bug: unexpected error answering %s", path)
                failure = HttpError(500, "internal error (logged)")
            else:
                failure = HttpError(status, str(error), headers)
        if path.startswith("/api/"):
            return error_response(failure)
        return self._page("error.html", root, failure.status, message=failure.message)

    # --- pages ----------------------------------------------------------------------------------

    def _page(self, name: str, root: str, status: int = 200, **values: str) -> Response:
        """A page of static/ with {{ROOT}} and {{NAME}} placeholders filled in, escaped."""
        text = self._static[name].body.decode()
        for key, value in {"root": root, **values}.items():
            text = text.replace("{{" + key.upper() + "}}", html.escape(value, quote=True))
        headers = {"Cache-Control": "no-store"}
        return Response(text, status, headers=headers, media_type=_TYPES[".html"])

    async def _index(self, request: Request, _params: dict[str, str]) -> Response:
        return self._page("index.html", _root(request))

    async def _user_page(self, request: Request, params: dict[str, str]) -> Response:
        user = params["user_id"]
        if user == "":
            raise InvalidRequest("user_id", "user_id is empty: name a user")
        return self._page("user.html", _root(request), user_id=canonical_user_id(user))

    async def _static_file(self, _request: Request, params: dict[str, str]) -> Response:
        found = self._static.get(params["name"])
        if found is None or params["name"].endswith(".html"):
            raise HttpError(404, f"no static file {params['name']!r}")
        headers = {"Cache-Control": "no-cache"}
        return Response(found.body, headers=headers, media_type=found.media_type)

    # --- JSON -----------------------------------------------------------------------------------

    async def _alerts(self, request: Request, _params: dict[str, str]) -> Response:
        authorization = request.headers.get("authorization")
        self._reads.readable(authorization, [])  # 401 / 403 before any work
        rows = await self._board.active()
        users = set(self._reads.readable(authorization, (r.user_id for r in rows)))
        mine = [r for r in rows if r.user_id in users]
        shown = mine[: self._max_listed]
        newest = await self._board.newest([r.user_id for r in shown])
        body = alerts_body(self._clock_ms(), shown, newest, len(mine))
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def _user(self, request: Request, params: dict[str, str]) -> Response:
        view = await self._reads.user_view(
            params["user_id"],
            request.headers.get("authorization"),
            since_ms=_int_param(request, "since_ms"),
            day_start_ms=_int_param(request, "day_start_ms"),
        )
        return JSONResponse(user_body(view), headers={"Cache-Control": "no-store"})


def _root(request: Request) -> str:
    """Where the application is mounted ("" at /): the pages' links start with it."""
    return str(request.scope.get("root_path", "") or "").rstrip("/")
