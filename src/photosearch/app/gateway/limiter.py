"""Failed logins slow down the next try: per address and per account, exponentially.

Each address and each account name has a count of recent failures. The first few are free;
after that, the next try from that address (or for that account) is refused until a wait has
passed that doubles with every failure, up to `max_wait` seconds. A quiet `window` forgets the
failures. Counting per account as well stops one guesser spread over many addresses; counting
per address stops one address guessing many accounts. A success clears its account's count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "LoginLimiter",
]


@dataclass
class _Failures:
    count: int
    last: float


class LoginLimiter:
    """Decides whether a login may be tried now, and records the failures."""

    def __init__(
        self,
        *,
        free_per_address: int = 5,
        free_per_account: int = 3,
        base_wait: float = 2.0,
        max_wait: float = 900.0,
        window: float = 3600.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = {"address": free_per_address, "account": free_per_account}
        self.base_wait, self.max_wait, self.window = base_wait, max_wait, window
        self.max_keys = max_keys  # bounds memory under a flood of made-up names
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], _Failures] = {}

    def _wait_for(self, key: tuple[str, str], now: float) -> float:
        entry = self._failures.get(key)
        if entry is None:
            return 0.0
        if now - entry.last >= self.window:
            del self._failures[key]
            return 0.0
        over = entry.count - self.free[key[0]]
        if over < 0:
            return 0.0
        wait = min(self.base_wait * 2.0**over, self.max_wait)
        return max(0.0, entry.last + wait - now)

    def retry_after(self, address: str, account: str) -> float:
        """Seconds before a login from `address` for `account` may be tried (0: now)."""
        now = self._clock()
        with self._lock:
            return max(
                self._wait_for(("address", address), now),
                self._wait_for(("account", account), now),
            )

    def failed(self, address: str, account: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) >= self.max_keys:
                self._forget_oldest(now)
            for key in (("address", address), ("account", account)):
                entry = self._failures.get(key)
                if entry is None or now - entry.last >= self.window:
                    self._failures[key] = _Failures(1, now)
                else:
                    entry.count, entry.last = entry.count + 1, now

    def succeeded(self, account: str) -> None:
        with self._lock:
            self._failures.pop(("account", account), None)

    def _forget_oldest(self, now: float) -> None:
        expired = [key for key, entry in self._failures.items() if now - entry.last >= self.window]
        for key in expired or sorted(self._failures, key=lambda k: self._failures[k].last)[:1000]:
            del self._failures[key]
