"""Order-preserving encoding of key tuples (str, int, bytes) into LMDB keys.

LMDB compares keys as raw bytes, so ``encode_key(a) < encode_key(b)`` must hold exactly
when ``a < b`` for tuples of the same shape, and ``encode_key(prefix)`` must be a byte
prefix of every key that extends ``prefix`` (prefix scans find a key's whole range: an
object's state, an invocation's journal, a key's inbox).

The layout follows FoundationDB's tuple layer, trimmed to three types:

- bytes: ``0x01``, the bytes with every ``0x00`` written as ``0x00 0xFF``, then ``0x00``.
- str:   ``0x02``, the UTF-8 bytes escaped the same way, then ``0x00``.
- int:   ``0x14`` for zero; ``0x14 + n`` then n big-endian bytes for a positive value of n
  bytes (n <= 8); ``0x14 - n`` then the one's complement for a negative one; values of
  more than 8 bytes use ``0x1D`` / ``0x0B`` with a length byte.

The terminator ``0x00`` sorts below every escaped byte (``0x00 0xFF`` and ``0x01..``), so
``"a" < "ab"`` holds in bytes too. Types sort bytes < str < int; Python does not order
mixed types, so that choice is ours and only has to be stable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

KeyPart = str | int | bytes
KeyTuple = tuple[KeyPart, ...]

_BYTES = 0x01
_STR = 0x02
_INT_ZERO = 0x14
_INT_POS_BIG = 0x1D
_INT_NEG_BIG = 0x0B
#: Ints from 0 to below this take ``encode_key``'s fast path (at most 8 bytes).
_SMALL_INT = 1 << 64


def _escape(raw: bytes) -> bytes:
    return raw.replace(b"\x00", b"\x00\xff") + b"\x00"


def _encode_int(value: int, out: bytearray) -> None:
    if value == 0:
        out.append(_INT_ZERO)
        return
    magnitude = abs(value)
    size = (magnitude.bit_length() + 7) // 8
    if value > 0:
        if size <= 8:
            out.append(_INT_ZERO + size)
        else:
            if size > 255:
                raise ValueError(f"integer key part too large: {size} bytes")
            out += bytes((_INT_POS_BIG, size))
        out += magnitude.to_bytes(size, "big")
        return
    complement = ((1 << (8 * size)) - 1) - magnitude
    if size <= 8:
        out.append(_INT_ZERO - size)
    else:
        if size > 255:
            raise ValueError(f"integer key part too large: {size} bytes")
        out += bytes((_INT_NEG_BIG, size ^ 0xFF))
    out += complement.to_bytes(size, "big")


def encode_key(parts: Sequence[KeyPart]) -> bytes:
    """Encode a tuple of str, int and bytes into an order-preserving byte key."""
    out = bytearray()
    for part in parts:
        # Exact types first: every key the runtime makes is str and small ints, and a
        # key is encoded several times per invocation. Subclasses take the checks below.
        if type(part) is str:
            out.append(_STR)
            out += part.encode("utf-8").replace(b"\x00", b"\x00\xff")
            out.append(0)
            continue
        if type(part) is int and 0 <= part < _SMALL_INT:
            if part:
                size = (part.bit_length() + 7) // 8
                out.append(_INT_ZERO + size)
                out += part.to_bytes(size, "big")
            else:  # a journal's first entry, a timer's index
                out.append(_INT_ZERO)
            continue
        # bool is an int subclass; a key holding True would decode as 1, so refuse it.
        if isinstance(part, bool):
            raise TypeError("key parts must be str, int or bytes, not bool")
        if isinstance(part, str):
            out.append(_STR)
            out += _escape(part.encode("utf-8"))
        elif isinstance(part, int):
            _encode_int(part, out)
        elif isinstance(part, bytes | bytearray | memoryview):
            out.append(_BYTES)
            out += _escape(bytes(part))
        else:
            raise TypeError(f"key parts must be str, int or bytes, not {type(part).__name__}")
    return bytes(out)


def _decode_escaped(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    length = len(data)
    while True:
        end = data.find(b"\x00", pos)
        if end < 0:
            raise ValueError("unterminated string in key")
        out += data[pos:end]
        if end + 1 < length and data[end + 1] == 0xFF:
            out.append(0)
            pos = end + 2
            continue
        return bytes(out), end + 1


def decode_key(data: bytes) -> KeyTuple:
    """Decode a key made by ``encode_key``. Raises ``ValueError`` on malformed input."""
    parts: list[KeyPart] = []
    pos = 0
    length = len(data)
    while pos < length:
        tag = data[pos]
        pos += 1
        if tag == _BYTES:
            raw, pos = _decode_escaped(data, pos)
            parts.append(raw)
        elif tag == _STR:
            raw, pos = _decode_escaped(data, pos)
            parts.append(raw.decode("utf-8"))
        elif tag == _INT_ZERO:
            parts.append(0)
        elif _INT_ZERO < tag <= _INT_ZERO + 8 or tag == _INT_POS_BIG:
            if tag == _INT_POS_BIG:
                if pos >= length:
                    raise ValueError("truncated integer length in key")
                size = data[pos]
                pos += 1
            else:
                size = tag - _INT_ZERO
            if pos + size > length:
                raise ValueError("truncated integer in key")
            parts.append(int.from_bytes(data[pos : pos + size], "big"))
            pos += size
        elif _INT_ZERO - 8 <= tag < _INT_ZERO or tag == _INT_NEG_BIG:
            if tag == _INT_NEG_BIG:
                if pos >= length:
                    raise ValueError("truncated integer length in key")
                size = data[pos] ^ 0xFF
                pos += 1
            else:
                size = _INT_ZERO - tag
            if pos + size > length:
                raise ValueError("truncated integer in key")
            complement = int.from_bytes(data[pos : pos + size], "big")
            parts.append(complement - ((1 << (8 * size)) - 1))
            pos += size
        else:
            raise ValueError(f"unknown key type tag 0x{tag:02x} at offset {pos - 1}")
    return tuple(parts)


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


def tuple_prefix_end(prefix: bytes) -> bytes:
    """The end of the range of keys that encode tuples *extending* the tuple encoded as
    ``prefix`` (its children, and itself). Not ``prefix_end``: an element such as
    ``"w"`` is a byte prefix of ``"w\x00"`` (written ``w 0x00 0xFF``), whose tuple does
    not extend ``("w",)``. No type code is ``0xFF``, so the children of a tuple are the
    keys from ``prefix`` up to ``prefix + 0xFF`` (as FoundationDB's ``range``)."""
    return prefix + b"\xff"
