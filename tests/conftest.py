"""Test harness: runs ``async def`` tests under trio and asyncio, and Hypothesis profiles.

Modelled on trio's own pytest plugin: a ``pytest_pyfunc_call`` hook runs coroutine tests
to completion, so tests stay plain ``async def test_x() -> None`` functions.

* Every coroutine test runs twice, under trio and under asyncio (the ``async_backend``
  parameter), unless it is marked ``trio_only`` or uses ``autojump_clock``.
* ``autojump_clock`` gives a ``trio.testing.MockClock(autojump_threshold=0)``; the test
  runs with it as trio's clock, so sleeps and timeouts skip ahead once all tasks block.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from typing import Any, cast

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=2000)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "trio_only: run this coroutine test under trio only")
    config.addinivalue_line(
        "markers",
        "packaging: builds a wheel and installs it into a fresh venv from the package index "
        "(runs in `make test`; deselect with -m 'not packaging')",
    )


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    """A MockClock that jumps ahead whenever every task is blocked."""
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not inspect.iscoroutinefunction(metafunc.function):
        return
    trio_only = "autojump_clock" in metafunc.fixturenames or (
        metafunc.definition.get_closest_marker("trio_only") is not None
    )
    metafunc.fixturenames.append("async_backend")
    metafunc.parametrize("async_backend", ["trio"] if trio_only else ["trio", "asyncio"])


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    wanted = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {k: v for k, v in pyfuncitem.funcargs.items() if k in wanted}
    backend = pyfuncitem.callspec.params["async_backend"]
    if backend == "trio":
        clock = cast("trio.abc.Clock | None", pyfuncitem.funcargs.get("autojump_clock"))
        trio.run(functools.partial(fn, **kwargs), clock=clock)
    else:
        asyncio.run(fn(**kwargs))
    return True
