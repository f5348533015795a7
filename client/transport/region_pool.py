"""A pool of shared-memory regions reused across requests, with reference counts.

The pool does no server IO: it hands out regions and says which to register or destroy, and the
core's flows run those calls. It is thread-safe (one lock, never held across IO), so one client can
serve many threads or asyncio tasks:

- ``acquire(byte_size)`` leases an idle registered region that fits, or makes a new one (which the
  caller registers), or returns None when ``max_regions`` are all busy: the caller then sends that
  tensor over gRPC instead.
- ``retain``/``release`` count users: the current image's embedding region is held by the image
  and by every predict reading it, so ``set_image`` never overwrites an embedding in use.
- ``surplus()`` and ``close()`` hand back regions to unregister and destroy.
- ``quarantine(region)`` takes a region out of service for good: the server may still write into
  it (a call that timed out or was cancelled; Triton does not know the client gave up, and with
  several model instances a late write would land in the next call's tensors). It still counts
  towards ``max_regions``; ``take_quarantined()`` hands it out for an unregistration attempt (Triton
  refuses one while a request uses the region), then ``retire`` forgets it or ``requarantine``
  keeps it for the next attempt.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from ..errors import ClientClosedError


@dataclass
class _Entry:
    region: Any
    refs: int = 0
    registered: bool = False
    quarantined: bool = False
    retiring: bool = False  # handed out by take_quarantined, its unregistration under way


@dataclass
class Acquired:
    """A leased region; ``new`` ones must be registered; ``evicted`` ones must be destroyed."""

    region: Any
    new: bool
    evicted: List[Any] = field(default_factory=list)


class RegionPool:
    """Regions made by ``factory(byte_size)``; at most ``max_regions`` live, ``max_idle`` kept idle."""

    def __init__(self, factory: Callable[[int], Any], *, max_regions: int = 16, max_idle: int = 8) -> None:
        self._factory = factory
        self.max_regions = max_regions
        self.max_idle = max_idle
        self._lock = threading.Lock()
        self._entries: Dict[str, _Entry] = {}
        self.closed = False

    def acquire(self, byte_size: int) -> Optional[Acquired]:
        """Lease a region of at least ``byte_size`` bytes (refs = 1), or None if all are busy."""
        with self._lock:
            if self.closed:
                raise ClientClosedError("this client is closed; create a new one")
            idle = [e for e in self._entries.values() if e.refs == 0 and e.registered and not e.quarantined]
            fits = [e for e in idle if e.region.byte_size >= byte_size]
            if fits:
                best = min(fits, key=lambda e: e.region.byte_size)
                best.refs = 1
                return Acquired(best.region, new=False)
            evicted = []
            if len(self._entries) >= self.max_regions:
                if not idle:
                    return None
                victim = min(idle, key=lambda e: e.region.byte_size)
                del self._entries[victim.region.name]
                evicted.append(victim.region)
            entry = _Entry(self._factory(byte_size), refs=1)
            self._entries[entry.region.name] = entry
            return Acquired(entry.region, new=True, evicted=evicted)

    def mark_registered(self, region: Any) -> None:
        with self._lock:
            entry = self._entries.get(region.name)
            if entry is not None:
                entry.registered = True

    def discard(self, region: Any) -> None:
        """Forget a region whose registration failed, and free it locally."""
        with self._lock:
            self._entries.pop(region.name, None)
        region.destroy()

    def retain(self, region: Any) -> None:
        with self._lock:
            self._entries[region.name].refs += 1

    def release(self, region: Any) -> None:
        with self._lock:
            entry = self._entries.get(region.name)
            if entry is not None:
                entry.refs -= 1

    def quarantine(self, region: Any) -> None:
        """Never hand ``region`` out again (the caller's lease ends here); it waits for ``take_quarantined``.
        A region no longer in the pool (evicted, refused unregistration) joins it as quarantined."""
        with self._lock:
            entry = self._entries.get(region.name)
            if entry is None:
                entry = self._entries[region.name] = _Entry(region, registered=True)
            entry.refs, entry.quarantined, entry.retiring = 0, True, False

    def take_quarantined(self) -> List[Any]:
        """The quarantined regions no one is retiring now, marked as being retired."""
        with self._lock:
            taken = [e for e in self._entries.values() if e.quarantined and not e.retiring]
            for entry in taken:
                entry.retiring = True
            return [entry.region for entry in taken]

    def requarantine(self, region: Any) -> None:
        """The server still uses ``region`` (or could not be asked): keep it for the next attempt."""
        with self._lock:
            entry = self._entries.get(region.name)
            if entry is not None:
                entry.retiring = False

    def retire(self, region: Any) -> None:
        """Forget a quarantined region the server let go of (the caller frees it locally)."""
        with self._lock:
            self._entries.pop(region.name, None)

    def is_quarantined(self, region: Any) -> bool:
        with self._lock:
            entry = self._entries.get(region.name)
            return entry is not None and entry.quarantined

    def quarantined_names(self) -> List[str]:
        """Names of the quarantined regions (for status and tests)."""
        with self._lock:
            return sorted(name for name, entry in self._entries.items() if entry.quarantined)

    def surplus(self) -> List[Any]:
        """Idle regions beyond ``max_idle`` (all idle ones once closed), removed from the pool."""
        with self._lock:
            idle = [e for e in self._entries.values() if e.refs == 0 and not e.quarantined]
            keep = 0 if self.closed else self.max_idle
            doomed = sorted(idle, key=lambda e: e.region.byte_size)[: max(0, len(idle) - keep)]
            for entry in doomed:
                del self._entries[entry.region.name]
            return [entry.region for entry in doomed]

    def close(self) -> List[Any]:
        """Refuse new leases; return the idle regions (busy ones come back from ``surplus`` later,
        quarantined ones from ``take_quarantined``)."""
        with self._lock:
            self.closed = True
        return self.surplus()

    def destroy_local(self) -> None:
        """Free every region locally, without telling the server (the interpreter is exiting)."""
        with self._lock:
            regions = [e.region for e in self._entries.values()]
            self._entries.clear()
            self.closed = True
        for region in regions:
            region.destroy()

    def registered_regions(self) -> List[Any]:
        with self._lock:
            return [e.region for e in self._entries.values() if e.registered]
