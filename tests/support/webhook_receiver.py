"""A webhook receiver for tests: an HTTP endpoint on 127.0.0.1 that records the POSTs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from heartrate_serve.runtime.embedded_redis import free_port

GUARD_S = 15.0


@dataclass
class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records POSTs; `status` is what it answers, `delay_s`
    how long it waits first."""

    url: str = ""
    status: int = 200
    delay_s: float = 0.0
    got: list[tuple[dict[str, object], dict[str, str], bytes]] = field(default_factory=list)
    tries: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.tries += 1
        body = await request.read()
        await asyncio.sleep(self.delay_s)
        if self.status == 200:
            self.got.append((json.loads(body), dict(request.headers), body))
            self.arrived.set()
        return web.Response(status=self.status)

    async def wait_for(self, n: int, timeout_s: float = GUARD_S) -> list[dict[str, object]]:
        async with asyncio.timeout(timeout_s):
            while len(self.got) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return [g[0] for g in self.got]


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    rec.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()
