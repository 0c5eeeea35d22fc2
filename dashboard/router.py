"""A small router over starlette requests and responses: method + path pattern -> handler.

Patterns are paths with `{name}` segments (one path segment each, possibly empty); the handler
gets the request and the segments by name. A path no route matches answers 404, a known path
with another method 405 (with Allow); HEAD is answered by the GET handler.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from heartrate_serve.core.errors import HttpError

Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]
_SEGMENT = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Route:
    """One method and path pattern."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler


def compile_path(path: str) -> re.Pattern[str]:
    """`/users/{user_id}` as a regular expression matching the whole path."""
    parts = _SEGMENT.split(path)
    regex = "".join(
        f"(?P<{part}>[^/]*)" if i % 2 else re.escape(part) for i, part in enumerate(parts)
    )
    return re.compile(f"^{regex}$")


def error_response(error: HttpError) -> Response:
    """An HttpError as JSON: {"error": message, "status": code}."""
    body = {"error": error.message, "status": error.status}
    return JSONResponse(body, error.status, headers=error.headers)


class Router:
    """Routes in the order added; the first match wins."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, path: str, handler: Handler) -> None:
        """Routes `method` requests whose path matches `path` to handler."""
        self._routes.append(Route(method.upper(), compile_path(path), handler))

    def get(self, path: str) -> Callable[[Handler], Handler]:
        """Decorator: handler for GET (and HEAD) of `path`."""

        def register(handler: Handler) -> Handler:
            self.add("GET", path, handler)
            return handler

        return register

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and path segments for a request; HttpError 404 or 405 when none fits."""
        method = "GET" if method.upper() == "HEAD" else method.upper()
        allowed: set[str] = set()
        for route in self._routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.method == method:
                return route.handler, found.groupdict()
            allowed.add(route.method)
        if allowed:
            allow = ", ".join(sorted(allowed | ({"HEAD"} if "GET" in allowed else set())))
            raise HttpError(405, f"method {method} not allowed on {path}", {"Allow": allow})
        raise HttpError(404, f"no page or endpoint at {path}")

    async def dispatch(self, request: Request, path: str) -> Response:
        """The handler's response for `path` (the request's path below the app's prefix)."""
        handler, params = self.match(request.method, path)
        return await handler(request, params)
