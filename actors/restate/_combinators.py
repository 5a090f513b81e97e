"""Restate's ``restate.gather``, ``select``, ``wait_completed`` and ``as_completed``.

They wait through the runtime's journaled ``actors.wait_completed``, so which futures
had finished is recorded and a replay sees the same partition. Lazy futures (state
reads, ``time()``) and futures already settled count as completed at once, in argument
order: which ones those are is itself deterministic (what the handler did before).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import actors

from ._futures import RestateDurableFuture
from ._plain import translated
from .exceptions import TerminalError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["as_completed", "gather", "select", "wait_completed"]


def _checked(futures: tuple[Any, ...], what: str) -> list[RestateDurableFuture[Any]]:
    for future in futures:
        if not isinstance(future, RestateDurableFuture):
            raise TerminalError(
                f"{what} takes futures made by a Restate context (ctx.run, ctx.sleep, "
                f"calls, ctx.get...), not {type(future).__name__}",
                400,
            )
    return list(futures)


async def _settle_ready(futures: list[RestateDurableFuture[Any]]) -> list[bool]:
    """Settle every future that needs no waiting; which ones are complete."""
    complete = []
    for future in futures:
        if future._durable is None or future._settled:
            await future._settle()
            complete.append(True)
        else:
            complete.append(False)
    return complete


async def wait_completed(
    *args: RestateDurableFuture[Any],
) -> tuple[list[RestateDurableFuture[Any]], list[RestateDurableFuture[Any]]]:
    """Wait until at least one future is completed; return ``(completed, uncompleted)``,
    each in argument order. Returns at once when one is already completed."""
    futures = _checked(args, "wait_completed()")
    if not futures:
        return [], []
    complete = await _settle_ready(futures)
    if not any(complete):
        waiting = [f._durable for f in futures if f._durable is not None]
        done, _ = await translated(actors.wait_completed(*waiting))
        finished = {id(d) for d in done}
        complete = [id(f._durable) in finished for f in futures]
        for future, is_done in zip(futures, complete, strict=True):
            if is_done:
                await future._settle()  # does not wait: the runtime has its result
    completed = [f for f, c in zip(futures, complete, strict=True) if c]
    uncompleted = [f for f, c in zip(futures, complete, strict=True) if not c]
    return completed, uncompleted


async def gather(*futures: RestateDurableFuture[Any]) -> list[RestateDurableFuture[Any]]:
    """Wait until every future is completed and return them (await each for its value:
    a failed one raises its ``TerminalError`` then)."""
    remaining = _checked(futures, "gather()")
    while remaining:
        _, remaining = await wait_completed(*remaining)
    return list(futures)


async def as_completed(
    *futures: RestateDurableFuture[Any],
) -> AsyncIterator[RestateDurableFuture[Any]]:
    """Yield the futures as they complete (those completing together in argument
    order); every step is journaled, so a replay yields the same order."""
    remaining = _checked(futures, "as_completed()")
    while remaining:
        completed, remaining = await wait_completed(*remaining)
        for future in completed:
            yield future


async def select(**kws: RestateDurableFuture[Any]) -> list[Any]:
    """Wait for the first future to complete; return ``[name, result]`` (a failed
    winner raises its ``TerminalError``). Ties go to the first named. Journaled."""
    if not kws:
        raise ValueError("select() needs at least one future")
    names = {id(future): name for name, future in kws.items()}
    completed, _ = await wait_completed(*kws.values())
    winner = completed[0]
    return [names[id(winner)], await winner]
