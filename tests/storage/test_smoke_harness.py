from __future__ import annotations

import sniffio
import trio


async def test_runs_under_each_backend(async_backend: str) -> None:
    assert sniffio.current_async_library() == async_backend


async def test_autojump_skips_time(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    await trio.sleep(3600)
    assert trio.current_time() - start >= 3600
