"""The connection and shared-memory half of ``SamCore``: flows that wait for the server, run one
call with the retry rule, and lease, register, resync and free regions.

``TransportFlows`` is a mixin: it reads and writes ``SamCore``'s state (``pool``, ``transport``,
``_lock``...), documented there.

Quarantine: a region the server may still write into (its call timed out or was cancelled) is
never leased again (``RegionPool.quarantine``). After each call the client asks the server to
unregister it; Triton refuses while a request still uses the region ("it is currently in use"), so
a successful unregistration means the server let go, and only then is the region freed here. A
restarted server holds no request: its quarantined regions are freed at the resync.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Optional

import numpy as np

from ..contract import EMBED_DIM, EMBED_SIZE, LOW_RES_SIZE, NUM_MASK_OUTPUTS, Limits
from ..errors import (
    ClientNotOpenError,
    RequestTimeoutError,
    ServerError,
    ServerUnavailableError,
    SharedMemoryError,
    TransportUnavailableError,
)
from .channel_options import ChannelOptions
from .ops import NO_RETRY, Flow, RetryPolicy, Rpc, Sleep, call, read_rpc
from .region_pool import RegionPool
from .regions import REGION_KINDS
from .server_key import ENV_VAR, grpc_headers, resolve_key

log = logging.getLogger(__name__)

#: How often close() asks the server again to let go of quarantined regions.
QUARANTINE_POLL_S = 0.05

#: Shapes and float32 byte sizes of what lives in regions.
EMBEDDING_SHAPE = (1, EMBED_DIM, EMBED_SIZE, EMBED_SIZE)
EMBEDDING_BYTES = int(np.prod(EMBEDDING_SHAPE)) * 4
LOGITS_BYTES_PER_PROMPT = NUM_MASK_OUTPUTS * LOW_RES_SIZE * LOW_RES_SIZE * 4
MASK_INPUT_BYTES_PER_PROMPT = LOW_RES_SIZE * LOW_RES_SIZE * 4


class TransportFlows:
    """Connection and region flows of ``SamCore`` (see its docstring for the state they use)."""

    # SamCore's state that these flows read and write (set in SamCore.__init__)
    url: str
    timeout_s: float
    connect_timeout_s: float
    retry: RetryPolicy
    limits: Optional[Limits]
    state: str
    pool: Optional[RegionPool]
    transport: Optional[str]
    api_key: Optional[str]
    requested_transport: str
    channel: ChannelOptions
    _prefix: str
    _lock: threading.Lock
    _needs_probe: bool
    _zeros: Optional[Any]
    _zeros_pending: bool

    def known_limits(self) -> Limits:
        """The decoder's limits: given to the client, or read from the server's config on open."""
        if self.limits is None:
            raise ClientNotOpenError("the decoder's limits are read from the server on open: open the client first")
        return self.limits

    # -- connection --------------------------------------------------------------------------
    def _rpc(self, rpc: Any) -> Flow:
        """Run ``rpc``; after an UNAVAILABLE anywhere, the next one first re-checks the server."""
        yield from self._reconnect_if_needed()
        try:
            return (yield from call(rpc, self.retry if rpc.idempotent else NO_RETRY))
        except ServerUnavailableError:
            self._needs_probe = True  # the next call re-checks the server before sending anything
            raise

    def _probe_ready(self) -> Flow:
        """Poll is_server_ready until it answers True, with backoff, for up to connect_timeout_s."""
        deadline = time.monotonic() + self.connect_timeout_s
        attempt, last_error = 0, None
        while True:
            remaining = deadline - time.monotonic()
            try:
                ready = yield from call(read_rpc("is_server_ready", timeout_s=max(0.1, min(remaining, 5.0))))
                if ready:
                    return
                last_error = None
            except (ServerUnavailableError, RequestTimeoutError) as exc:
                last_error = exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerUnavailableError(
                    f"Triton at {self.url} was not ready within connect_timeout_s={self.connect_timeout_s:g}"
                    + (f" (last error: {last_error}){self._tls_hint()}" if last_error else " (it answers, but is not ready)"),
                    status="UNAVAILABLE",
                ) from last_error
            yield Sleep(min(self.retry.backoff_s(attempt), remaining))
            attempt += 1

    def _tls_hint(self) -> str:
        """What to check when no connection came up: the channel's TLS settings against the server's."""
        if self.channel.secure:
            return (
                "; this client uses TLS: the server must serve TLS (--grpc-use-ssl) with a certificate for this"
                " address that root_certificates (or gRPC's default roots) verifies, and with --grpc-use-ssl-mutual"
                " this client needs private_key and certificate_chain"
            )
        return "; a server that serves TLS closes plaintext connections: then pass ssl=True and root_certificates="

    def _reconnect_if_needed(self) -> Flow:
        """After an UNAVAILABLE: wait for the server, then re-register regions a restart lost."""
        with self._lock:
            needed, self._needs_probe = self._needs_probe, False
        if not needed:
            return
        try:
            yield from self._probe_ready()
            if self._uses_regions:
                yield from self._resync_regions()
        except BaseException:
            self._needs_probe = True
            raise

    # -- the shared-memory API ----------------------------------------------------------------
    def _keyed(self, rpc: Rpc) -> Rpc:
        """``rpc`` with the server's key in its headers (read anew each time: a restarted
        ``sam-triton serve`` has a new key)."""
        key, _ = resolve_key(self.url, self.api_key)
        return dataclasses.replace(rpc, kwargs={**rpc.kwargs, "headers": grpc_headers(key)})

    def _shm_rpc(self, rpc: Rpc) -> Flow:
        """A call of Triton's shared-memory API, with the key. Triton answers a restricted API's
        call without the right key with UNAVAILABLE; when the server then still reads ready, that
        is what happened, and it becomes a SharedMemoryError saying so (transport "auto" then
        falls back to "grpc")."""
        yield from self._reconnect_if_needed()  # first: a restarted server has a new key
        try:
            return (yield from self._rpc(self._keyed(rpc)))
        except ServerUnavailableError as exc:
            try:
                ready = yield from call(read_rpc("is_server_ready", timeout_s=min(self.timeout_s, 5.0)))
            except ServerError:
                ready = False
            if not ready:
                raise
            self._needs_probe = False
            _, sent = resolve_key(self.url, self.api_key)
            raise SharedMemoryError(
                f"{exc.detail} -- the server restricts its shared-memory API to requests with its key and this client"
                f" sent {sent}: pass the server's key as api_key= or in ${ENV_VAR} (the client reads the key file of a"
                " `sam-triton serve` on this host by itself), or use transport='grpc'",
                status=exc.status,
                request=rpc.request,
            ) from exc

    # -- regions -----------------------------------------------------------------------------
    @property
    def _regions(self) -> RegionPool:
        """The region pool, for flows that run only once the transport uses regions."""
        if self.pool is None:
            raise RuntimeError("this client holds no shared-memory regions (transport 'grpc', or not open)")
        return self.pool

    @property
    def _region_kind(self) -> Any:
        """The region class of the transport in use ("shm" or "cuda")."""
        if self.transport not in REGION_KINDS:
            raise RuntimeError(f"transport {self.transport!r} uses no shared-memory regions")
        return REGION_KINDS[self.transport]

    def _resync_regions(self) -> Flow:
        """Register again the regions a restarted server lost; unregister ones of ours it has and
        we do not (a registration whose reply was lost)."""
        status = yield from self._shm_rpc(self._region_kind.status_rpc(self.timeout_s))
        on_server = set((status or {}).get("regions", {}))
        ours = {region.name: region for region in self._regions.registered_regions()}
        for name, region in ours.items():
            if name not in on_server and self._regions.is_quarantined(region):
                self._regions.retire(region)  # a restarted server runs none of our old requests
                region.destroy()
            elif name not in on_server:
                log.warning("the server lost shared-memory region %s (restarted?); registering it again", name)
                yield from self._shm_rpc(region.register_rpc(self.timeout_s))
        for name in on_server:
            if name.startswith(self._prefix) and name not in ours:
                log.warning("unregistering orphaned shared-memory region %s", name)
                yield from self._shm_rpc(self._region_kind.unregister_named(name, self.timeout_s))

    @property
    def _uses_regions(self) -> bool:
        """Whether tensors go through shared-memory regions now (not with grpc, nor after a fall-back to it)."""
        return self.pool is not None and self.transport != "grpc"

    def _fall_back_to_grpc(self, reason: str) -> bool:
        """With transport='auto', switch to gRPC saying why and return True; otherwise False (the caller raises)."""
        if self.requested_transport != "auto":
            return False
        log.warning("%s; falling back to transport='grpc'", reason)
        self.transport = "grpc"
        return True

    def _lease(self, byte_size: int, timeout_s: float) -> Flow:
        """A registered region of at least ``byte_size`` bytes (release it), or None: send over gRPC."""
        if not self._uses_regions:
            return None
        try:
            acquired = self._regions.acquire(byte_size)
        except TransportUnavailableError as exc:  # /dev/shm full, or no GPU memory
            if not self._fall_back_to_grpc(f"cannot make a shared-memory region ({exc})"):
                raise
            return None
        if acquired is None:
            return None
        for victim in acquired.evicted:
            yield from self._destroy(victim, timeout_s)
        if acquired.new:
            try:
                yield from self._shm_rpc(acquired.region.register_rpc(timeout_s))
            except SharedMemoryError as exc:
                self._regions.discard(acquired.region)
                if not self._fall_back_to_grpc(f"the server at {self.url} cannot map shared memory ({exc})"):
                    raise
                return None
            except BaseException:
                self._regions.discard(acquired.region)
                self._needs_probe = True  # a registration whose reply was lost is swept by _resync_regions
                raise
            self._regions.mark_registered(acquired.region)
        return acquired.region

    def _zero_masks(self, timeout_s: float) -> Flow:
        """The held region of max_prompts zero masks (made on first use), or None."""
        if self._zeros is not None or not self._uses_regions:
            return self._zeros
        with self._lock:
            if self._zeros_pending:
                return None
            self._zeros_pending = True
        try:
            byte_size = self.known_limits().max_prompts * MASK_INPUT_BYTES_PER_PROMPT
            region = yield from self._lease(byte_size, timeout_s)
            if region is not None:
                region.write(np.zeros(byte_size // 4, np.float32))  # a reused region holds old bytes
                self._zeros = region
        finally:
            self._zeros_pending = False
        return self._zeros

    def _lease_and_release_probe(self) -> Flow:
        """Register the first embedding-sized region and keep it idle for set_image."""
        region = yield from self._lease(EMBEDDING_BYTES, self.timeout_s)
        if region is not None:
            self._regions.release(region)

    def _destroy(self, region: Any, timeout_s: float) -> Flow:
        """Unregister a region and free it locally. If the server refuses (a request it still
        runs reads the region) while the client is open, quarantine it for a later attempt;
        while closing, free it anyway (best effort: the server may be gone)."""
        try:
            yield from call(self._keyed(region.unregister_rpc(timeout_s)))  # no readiness wait: the server may be gone
        except ServerError as exc:
            if self.state == "open":
                self._regions.quarantine(region)
                return
            log.warning("could not unregister shared-memory region %s: %s", region.name, exc)
        except BaseException:
            region.destroy()
            raise
        region.destroy()

    def _retire_quarantined(self, timeout_s: float) -> Flow:
        """Ask the server to unregister each quarantined region; free the ones it lets go of,
        keep the others (still in use by a request, or the server unreachable). Returns how many
        remain quarantined."""
        for region in self._regions.take_quarantined():
            try:
                yield from call(self._keyed(region.unregister_rpc(timeout_s)))
            except ServerError:
                self._regions.requarantine(region)
                continue
            except BaseException:
                self._regions.requarantine(region)
                raise
            log.debug("shared-memory region %s left quarantine: the server let go of it", region.name)
            self._regions.retire(region)
            region.destroy()
        return len(self._regions.quarantined_names())

    def _drain_quarantine(self, deadline: float) -> Flow:
        """At close: wait until ``deadline`` for the server to let go of quarantined regions, then
        free the rest locally anyway (the server keeps their registrations; system shared memory
        stays mapped on its side, so its late writes land nowhere this client reads)."""
        while (yield from self._retire_quarantined(self.timeout_s)) and time.monotonic() < deadline:
            yield Sleep(QUARANTINE_POLL_S)
        for region in self._regions.take_quarantined():
            log.warning("shared-memory region %s is still in use by the server at close(); freeing it here", region.name)
            self._regions.retire(region)
            region.destroy()
