"""Rate limits for the routes anyone may call: a token bucket per client address, in memory.

Each client address holds up to ``burst`` tokens, refilled at ``rate`` per second; a request takes
one or is refused with 429 and the seconds until the next token (``Retry-After``, RFC 6585 4).
Per process: several API replicas each apply their own limit, which bounds a client at
replicas x rate; a shared limit belongs in the proxy (nginx ``limit_req``) in front of them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fabtrust.errors import InvalidInput, RateLimited

DEFAULT_RATE = 20.0  # requests per second per client, sustained
DEFAULT_BURST = 60
MAX_CLIENTS = 10_000  # buckets kept; the least recently seen are dropped first


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets per client key; thread-safe (routes run on the thread pool)."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        if not rate > 0 or burst < 1 or max_clients < 1:
            raise InvalidInput(
                "a rate limit needs a positive rate, a burst of at least 1 and room for a client"
            )
        self.rate, self.burst = float(rate), int(burst)
        self._clock, self._max = clock, max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> None:
        """Take one token for ``client``; RateLimited if its bucket is empty."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(client, None)
            if bucket is None:
                bucket = _Bucket(float(self.burst), now)
            else:
                bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
                bucket.at = now
            self._buckets[client] = bucket  # most recently seen last
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            if bucket.tokens < 1.0:
                wait = math.ceil((1.0 - bucket.tokens) / self.rate)
                raise RateLimited("too many requests from this client; slow down", retry_after=max(1, wait))
            bucket.tokens -= 1.0
