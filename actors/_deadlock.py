"""The wait-for graph of invocations and keys, for deadlock detection.

Nodes are invocations and object keys. Edges:

- key -> invocation: the exclusive invocation that holds the key now;
- invocation -> key: the invocation waits on an exclusive call queued on that key;
- invocation -> invocation: the invocation waits on a call that does not need a key
  (a shared or service handler).

A call waits forever exactly when its new edge closes a cycle, because everything on
the cycle is holding what the next one needs. So every wait edge is checked before it
is added (a depth-first search from its head for its tail); a cycle fails the call that
would close it, before the callee is accepted, and the message names the cycle.

Cycles can only close when a wait edge is added: a key gets a new holder only when an
exclusive invocation starts, and an invocation that is just starting waits on nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable

Node = tuple[str, str]  # ("key", "Actor/key") or ("inv", invocation_id)


@attrs.define
class WaitForGraph:
    """Edges of who waits on whom. Not thread-safe; used from the runtime's loop."""

    _out: dict[Node, set[Node]] = attrs.field(factory=dict)

    def hold(self, key: Node, invocation: Node) -> None:
        """``invocation`` now holds ``key`` (starts running exclusively on it)."""
        self._out[key] = {invocation}

    def release(self, key: Node) -> None:
        """The holder of ``key`` released it."""
        self._out.pop(key, None)

    def find_cycle(self, waiter: Node, target: Node) -> list[Node] | None:
        """The cycle that the edge ``waiter -> target`` would close, or None."""
        if waiter == target:
            return [waiter, waiter]
        stack: list[tuple[Node, list[Node]]] = [(target, [waiter, target])]
        seen = {target}
        while stack:
            node, path = stack.pop()
            for nxt in self._out.get(node, ()):
                if nxt == waiter:
                    return [*path, waiter]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    def wait(self, waiter: Node, target: Node) -> None:
        """Add ``waiter -> target``. Call ``find_cycle`` first."""
        self._out.setdefault(waiter, set()).add(target)

    def unwait(self, waiter: Node, target: Node) -> None:
        """Remove ``waiter -> target``."""
        edges = self._out.get(waiter)
        if edges is not None:
            edges.discard(target)
            if not edges:
                del self._out[waiter]

    def describe(self, cycle: list[Node], name_of: Callable[[Node], str]) -> str:
        """A readable rendering of a cycle, keys only where possible."""
        return " -> ".join(name_of(node) for node in cycle)
