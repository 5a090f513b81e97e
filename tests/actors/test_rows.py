"""Row keys: the cached journal key is the key ``encode_key`` makes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from actors._rows import journal_key
from actors.storage import decode_key, encode_key


@given(st.text(), st.integers(min_value=0, max_value=2**70))
def test_journal_key_is_the_encoded_pair(invocation_id: str, index: int) -> None:
    key = journal_key(invocation_id, index)
    assert key == encode_key((invocation_id, index))
    assert decode_key(key) == (invocation_id, index)
    assert journal_key(invocation_id, index) == key  # cached: the same bytes again
