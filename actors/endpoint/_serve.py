"""``actors endpoint``: the endpoint's ASGI app under hypercorn, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from typing import Any


async def serve(app: Any, host: str, port: int, *, ready: Any = None) -> None:
    """Serve ``app`` on ``host:port`` (HTTP/1.1 and cleartext HTTP/2, as Restate
    connects) until SIGINT or SIGTERM; requests in progress are answered first (a
    graceful timeout of 5 s). ``ready(bound)`` is called with the bound addresses."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = 5.0
    config.accesslog = None
    config.errorlog = "-"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait)
