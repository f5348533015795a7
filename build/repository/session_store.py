"""sam_session's store: image embeddings kept between calls, bounded in bytes, LRU plus idle TTL.

Pure Python (no Triton), so tests/test_session_store.py checks it without a server; the
python-backend model ``sam_session`` (templates/session_model.py) holds one per instance. Each
session is charged its embedding's bytes plus one low-res logits slot (256x256 float32) when it
is opened, so remembering a previous mask never grows the store past ``capacity_bytes``: opening
evicts the least recently used sessions until the new one fits, and a session idle for more
than ``idle_ttl_s`` is dropped at the next call. Ids are 128 random bits from ``secrets``, never
derived from the image; the store has no call that lists them. Its calls hold one lock, so
sam_session's open and click lanes (threads of one stub process) share it safely.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from sam_triton.client.contract import LOW_RES_SIZE, SESSION_ID_BYTES

#: Bytes reserved per session for its last low-res logits (1x256x256 float32).
LOGITS_SLOT_BYTES = LOW_RES_SIZE * LOW_RES_SIZE * 4


class StoreFullError(ValueError):
    """One session would not fit even in an empty store (the capacity is below one embedding)."""


@dataclass
class Session:
    """One image: its embedding (a numpy array, or a GPU tensor on a GPU runtime), sizes, last mask."""

    embedding: Any
    original_size: Tuple[int, int]
    input_size: Tuple[int, int]
    charged_bytes: int
    last_used: float
    previous_logits: Optional[Any] = None  # 1x256x256 float32 of the last predict's best mask
    extra: Dict[str, Any] = field(default_factory=dict)


class SessionStore:
    """Sessions by id, at most ``capacity_bytes`` in all; counters for the server's metrics."""

    def __init__(self, *, capacity_bytes: int, idle_ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if capacity_bytes < 1 or idle_ttl_s <= 0:
            raise ValueError(f"session store: capacity_bytes {capacity_bytes} and idle_ttl_s {idle_ttl_s} must be > 0")
        self.capacity_bytes = int(capacity_bytes)
        self.idle_ttl_s = float(idle_ttl_s)
        self._clock = clock
        self._sessions: "OrderedDict[str, Session]" = OrderedDict()  # least recently used first
        self.bytes_held = 0
        self.hits = self.misses = self.evictions = self.expirations = 0
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, embedding: Any, embedding_bytes: int, original_size: Tuple[int, int], input_size: Tuple[int, int]) -> str:
        """Keep a new session and return its fresh id, evicting least recently used ones to fit it."""
        charge = int(embedding_bytes) + LOGITS_SLOT_BYTES
        if charge > self.capacity_bytes:
            raise StoreFullError(f"a session needs {charge} bytes; the store holds at most {self.capacity_bytes}")
        with self._lock:
            self.expire()
            while self.bytes_held + charge > self.capacity_bytes:
                _, evicted = self._sessions.popitem(last=False)
                self.bytes_held -= evicted.charged_bytes
                self.evictions += 1
            session_id = secrets.token_hex(SESSION_ID_BYTES)
            self._sessions[session_id] = Session(
                embedding, (int(original_size[0]), int(original_size[1])), (int(input_size[0]), int(input_size[1])), charge, self._clock()
            )
            self.bytes_held += charge
            return session_id

    def get(self, session_id: str) -> Optional[Session]:
        """The session (now the most recently used), or None if unknown, closed, evicted or expired."""
        with self._lock:
            self.expire()
            session = self._sessions.get(session_id)
            if session is None:
                self.misses += 1
                return None
            self.hits += 1
            session.last_used = self._clock()
            self._sessions.move_to_end(session_id)
            return session

    def touch(self, session_id: str) -> None:
        """A call on the session ended: it was in use until now (a long predict does not count as idle)."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None:
                session.last_used = self._clock()
                self._sessions.move_to_end(session_id)

    def close(self, session_id: str) -> bool:
        """Forget a session; False if it was not held."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is None:
                return False
            self.bytes_held -= session.charged_bytes
            return True

    def expire(self) -> int:
        """Drop every session idle for longer than ``idle_ttl_s``; returns how many."""
        with self._lock:
            deadline = self._clock() - self.idle_ttl_s
            dropped = 0
            while self._sessions:
                session_id, oldest = next(iter(self._sessions.items()))
                if oldest.last_used >= deadline:
                    break
                self.close(session_id)
                dropped += 1
            self.expirations += dropped
            return dropped
