"""Restate's ``restate.logging``: a logger for handler code.

Restate's filter drops records emitted while a handler replays its journal. The
embedded runtime does not tell handler code whether it is replaying, so this filter
passes every record: a handler that re-runs after a crash or a suspension logs again.
"""

from __future__ import annotations

import logging as _logging

__all__ = ["RestateLoggingFilter", "getLogger"]


class RestateLoggingFilter(_logging.Filter):
    """Restate's replay filter; embedded, it applies only the standard name filter."""

    def filter(self, record: _logging.LogRecord) -> bool:
        return super().filter(record)


def getLogger(name: str | None = None) -> _logging.Logger:
    """The standard logger ``name`` with a ``RestateLoggingFilter`` attached (once)."""
    logger = _logging.getLogger(name)
    if not any(isinstance(f, RestateLoggingFilter) for f in logger.filters):
        logger.addFilter(RestateLoggingFilter())
    return logger
