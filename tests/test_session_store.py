"""The session store alone: the byte cap holds whatever the number of opens, LRU order, idle TTL, close."""

from __future__ import annotations

import re

import pytest

from sam_triton.build.repository.session_store import LOGITS_SLOT_BYTES, SessionStore, StoreFullError

EMBEDDING = 1000
CHARGE = EMBEDDING + LOGITS_SLOT_BYTES


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def store(capacity_sessions=3, ttl_s=60.0):
    clock = Clock()
    return SessionStore(capacity_bytes=capacity_sessions * CHARGE, idle_ttl_s=ttl_s, clock=clock), clock


def test_the_cap_holds_and_the_least_recently_used_goes_first():
    sessions, _ = store(3)
    ids = [sessions.open(object(), EMBEDDING, (10, 20), (5, 10)) for _ in range(3)]
    assert sessions.get(ids[0]) is not None  # ids[1] is now the least recently used
    for _ in range(100):
        sessions.open(object(), EMBEDDING, (10, 20), (5, 10))
        assert sessions.bytes_held <= sessions.capacity_bytes and len(sessions) == 3
    assert sessions.get(ids[1]) is None and sessions.evictions == 100
    fresh, _ = store(3)
    first, second = (fresh.open(object(), EMBEDDING, (1, 1), (1, 1)) for _ in range(2))
    fresh.get(first)
    fresh.open(object(), EMBEDDING, (1, 1), (1, 1))
    fresh.open(object(), EMBEDDING, (1, 1), (1, 1))  # evicts second, the least recently used
    assert fresh.get(second) is None and fresh.get(first) is not None


def test_ids_are_random_128_bit_hex():
    sessions, _ = store(200)
    ids = {sessions.open(object(), EMBEDDING, (1, 1), (1, 1)) for _ in range(100)}
    assert len(ids) == 100 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_idle_sessions_expire_and_use_keeps_them():
    sessions, clock = store(3, ttl_s=10)
    kept, idle = (sessions.open(object(), EMBEDDING, (1, 1), (1, 1)) for _ in range(2))
    clock.now = 8
    assert sessions.get(kept) is not None
    clock.now = 15
    assert sessions.get(idle) is None and sessions.get(kept) is not None
    assert sessions.expirations == 1 and sessions.bytes_held == CHARGE
    clock.now = 24  # a call on kept that began at 15 ends: it was in use all along
    sessions.touch(kept)
    clock.now = 30
    assert sessions.get(kept) is not None


def test_close_frees_and_counts():
    sessions, _ = store(2)
    session_id = sessions.open(object(), EMBEDDING, (1, 1), (1, 1))
    assert sessions.close(session_id) and not sessions.close(session_id)
    assert sessions.bytes_held == 0 and sessions.get(session_id) is None
    assert (sessions.hits, sessions.misses) == (0, 1)


def test_a_session_larger_than_the_store_is_refused():
    sessions, _ = store(1)
    with pytest.raises(StoreFullError, match="holds at most"):
        sessions.open(object(), 2 * CHARGE, (1, 1), (1, 1))
