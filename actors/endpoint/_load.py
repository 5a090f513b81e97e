"""``actors load-state``: an ``actors export`` document into a Restate cluster.

Each exported object's (and workflow id's) state is written through the admin API,
``POST /services/{actor}/state`` with ``{"object_key", "new_state"}``: the state of that
key becomes exactly the exported entries, as bytes our converter made, which the
endpoint's handlers read back as the embedded runtime did. Register the endpoint first
(the admin API knows only registered services), and load before traffic reaches those
keys: the call replaces the key's whole state.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import msgspec

_FORMAT = "virtual-actors-export"


def _state_bytes(value: object) -> list[int]:
    if isinstance(value, dict) and set(value) == {"$bytes"}:
        raw = str(value["$bytes"]).encode()
    else:
        raw = msgspec.json.encode(value)  # what the endpoint itself writes
    return list(raw)


def load_state(document: dict[str, Any], admin: str, *, timeout: float = 30) -> int:
    """Write every object's state of ``document`` through the admin API at ``admin``.
    Returns how many keys were written.

    Raises:
      ValueError: ``document`` is not an ``actors export`` document.
      RuntimeError: the admin API refused a key (the message names it and says why,
        e.g. an actor not registered with the cluster); the keys before it are written.
    """
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise ValueError("not an `actors export` document (no format: virtual-actors-export)")
    if document.get("version") != 1:
        raise ValueError(f"unsupported export version {document.get('version')!r}")
    written = 0
    for item in document.get("objects", []):
        actor, key, state = item["actor"], item["key"], item["state"]
        body = json.dumps(
            {"object_key": key, "new_state": {n: _state_bytes(v) for n, v in state.items()}}
        ).encode()
        url = f"{admin.rstrip('/')}/services/{urllib.parse.quote(actor, safe='')}/state"
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                pass
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise RuntimeError(
                f"{actor}/{key}: the admin API answered {exc.code}: {detail}"
            ) from exc
        except OSError as exc:
            raise RuntimeError(
                f"{actor}/{key}: cannot reach the admin API at {admin}: {exc}"
            ) from exc
        written += 1
    return written
