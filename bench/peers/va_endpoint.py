"""The workloads' virtual-actors classes (``va_embedded``'s Counter and Steps, unchanged)
for ``actors endpoint bench.peers.va_endpoint:ACTORS``: what ``bench/endpoint_overhead.py``
serves to Restate beside Restate's own SDK service (``services/restate_service.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.peers.va_embedded import Counter, Steps

ACTORS = [Counter, Steps]
