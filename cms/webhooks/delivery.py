"""Sending webhook deliveries: at least once, in order per endpoint, with backoff.

A dispatcher thread picks the head of each endpoint's queue when it is due and hands it to a
small pool, so a slow or dead receiver holds up only its own queue, never an editor or another
endpoint. Only a 2xx counts; a 410 disables the endpoint; anything else is retried on the backoff
schedule (with jitter, or later if the receiver sent ``Retry-After``) and then marked failed.

How an attempt reaches a receiver (checked addresses, one deadline, a bounded answer) is in
``targets``.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from .signing import signed_headers
from .store import Attempt, DeliveryStatus, Due, WebhookStore
from .targets import TargetRefused, post

log = logging.getLogger("cms.webhooks")

DEFAULT_BACKOFF = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
_EXCERPT = 500  # characters of the answer kept in the delivery log
_MAX_DELAY = 24 * 3600.0
_FIRST_PAUSE = 1.0  # seconds after a failed round; doubled while rounds keep failing
_MAX_PAUSE = 60.0
_IDLE = 2.0  # seconds between rounds with nothing due
# A delivery being sent is claimed for its attempt's deadline and this much more.
_LEASE_MARGIN = 30.0


class Dispatcher:
    def __init__(self, store: WebhookStore, *, backoff: Sequence[float], timeout: float,
                 allow_private: bool, workers: int = 8) -> None:
        self.store = store
        self.backoff = tuple(backoff)
        self.timeout = timeout
        self.allow_private = allow_private
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook")
        self._busy: set[str] = set()
        # Endpoints whose last attempt failed unexpectedly: (until when, for how long) they rest.
        self._resting: dict[str, tuple[float, float]] = {}
        self._busy_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self.before_round: Callable[[], None] | None = None

    # Running

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webhook-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        pause = _FIRST_PAUSE
        while not self._stop.is_set():
            # Cleared before the round, not after the wait: a wake that comes during the round
            # then cuts the wait short instead of being lost.
            self._wake.clear()
            try:
                wake_at = self._round()
            except Exception as exc:
                # One failed round (the database busy, an endpoint deleted under it) must not
                # end deliveries for good. One line, without the message, which may quote data;
                # and a pause that only stop() cuts short, so that a lasting fault does not spin.
                log.error("webhook dispatch round failed (%s); next round in %g s",
                          _where(exc), pause)
                self._stop.wait(pause)
                pause = min(pause * 2, _MAX_PAUSE)
                continue
            pause = _FIRST_PAUSE
            # Another process's publications reach this outbox only through a round's look at
            # main, so rounds come at least every few seconds even with nothing queued.
            wait = _IDLE if wake_at is None else max(0.0, min(_IDLE, wake_at - time.time()))
            self._wake.wait(wait)

    def _round(self) -> float | None:
        if self.before_round is not None:
            try:
                self.before_round()
            except Exception as exc:
                # What is already queued can still go out.
                log.error("could not read new publications (%s); retrying next round",
                          _where(exc))
        return self.dispatch()

    def dispatch(self) -> float | None:
        """Start every due delivery; return when the next one falls due."""
        busy, rested_at = self._unavailable()
        due, wake_at = self.store.claim_due(time.time(), busy, lease=self.timeout + _LEASE_MARGIN,
                                            limit=max(0, self.workers - len(self._busy)))
        for item in due:
            with self._busy_lock:
                self._busy.add(item.endpoint.id)
            try:
                future = self._pool.submit(self.attempt, item)
            except BaseException:
                with self._busy_lock:  # never started: the endpoint must not stay busy for ever
                    self._busy.discard(item.endpoint.id)
                raise
            future.add_done_callback(functools.partial(self._done, item))
        if rested_at is not None:
            wake_at = rested_at if wake_at is None else min(wake_at, rested_at)
        return wake_at

    def _unavailable(self) -> tuple[set[str], float | None]:
        """The endpoints busy or resting now, and when the first rest ends."""
        now = time.time()
        with self._busy_lock:
            # A rest long over is forgotten; a recent one is kept to double the next.
            self._resting = {endpoint: rest for endpoint, rest in self._resting.items()
                             if rest[0] + _MAX_PAUSE > now}
            resting = {endpoint: until for endpoint, (until, _) in self._resting.items()
                       if until > now}
            return self._busy | resting.keys(), min(resting.values(), default=None)

    def _done(self, item: Due, future: Future[None]) -> None:
        endpoint_id = item.endpoint.id
        failure = None if future.cancelled() else future.exception()
        with self._busy_lock:
            self._busy.discard(endpoint_id)
            rest = 0.0
            if failure is not None:
                # The attempt could not record its result, so its delivery is still due: sent
                # again at once, it would spin against the receiver. The endpoint rests, twice
                # as long each time this happens in a row.
                rest = min(self._resting.get(endpoint_id, (0.0, _FIRST_PAUSE / 2))[1] * 2,
                           _MAX_PAUSE)
                self._resting[endpoint_id] = (time.time() + rest, rest)
            else:
                self._resting.pop(endpoint_id, None)
        if failure is not None:
            log.error("webhook attempt for %s failed (%s); its endpoint rests %g s",
                      endpoint_id, _where(failure), rest)
            try:  # due again after the rest, not only when its claim runs out
                self.store.release([item.delivery_id, *item.coalescible], at=time.time() + rest)
            except Exception as exc:
                log.warning("could not release delivery %s (%s); it is due again when its claim "
                            "ends", item.delivery_id, _where(exc))
        with self._idle:
            self._idle.notify_all()
        self._wake.set()

    def drain(self, max_rounds: int = 1000, at: float | None = None) -> None:
        """Deliver, in this thread, everything due now (or at time ``at``): for tools and tests."""
        for _ in range(max_rounds):
            with self._busy_lock:
                busy = set(self._busy)
            due, _ = self.store.claim_due(time.time() if at is None else at, busy,
                                          lease=self.timeout + _LEASE_MARGIN)
            if not due and not busy:
                return
            for item in due:
                with self._busy_lock:
                    self._busy.add(item.endpoint.id)
                try:
                    self.attempt(item)
                finally:
                    with self._busy_lock:
                        self._busy.discard(item.endpoint.id)
            if not due:
                with self._idle:
                    self._idle.wait(timeout=1.0)

    # One attempt

    def attempt(self, item: Due) -> None:
        import httpcore

        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        at = datetime.now(UTC)
        status_code: int | None = None
        error: str | None = None
        excerpt = ""
        retry_after: float | None = None
        try:
            status_code, excerpt, retry_after = self._send(item, deadline)
        except TargetRefused as exc:
            error = str(exc)
        except httpcore.TimeoutException:
            error = f"no complete answer within {self.timeout:g} s"
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
            error = f"{type(exc).__name__}: {exc}"[:_EXCERPT]
        except Exception as exc:
            # Whatever went wrong, it is this attempt's failure: recorded, then retried later,
            # never a delivery stuck at the head of its queue.
            log.error("unexpected error delivering %s (%s)", item.delivery_id, _where(exc))
            error = f"{type(exc).__name__}: {exc}"[:_EXCERPT]
        attempt = Attempt(at=at, status_code=status_code,
                          duration_ms=round((time.perf_counter() - started) * 1000, 2),
                          error=error, response_excerpt=excerpt)
        status, next_at = self._outcome(item, status_code, retry_after)
        recorded = self.store.finish_attempt(item.delivery_id, attempt, status=status,
                                             next_attempt_at=next_at, coalesced=item.coalescible)
        if not recorded:
            log.info("delivery %s ended after its endpoint was deleted; nothing recorded",
                     item.delivery_id)
        elif status_code == 410:
            self.store.disable(item.endpoint.id, "the receiver answered 410 Gone")

    def _send(self, item: Due, deadline: float) -> tuple[int, str, float | None]:
        """POST the event; the status, the start of the answer and its ``Retry-After``."""
        body = item.event.payload
        if item.endpoint.kind == "build_hook":
            # A plain build trigger (static hosts' build hooks): no body to parse, still signed.
            body = b""
        headers = signed_headers(item.secrets, item.event.id, int(time.time()), body)
        answer = post(item.endpoint.url, headers, body, deadline=deadline, timeout=self.timeout,
                      allow_private=self.allow_private)
        return answer.status, answer.excerpt[:_EXCERPT], answer.retry_after

    def _outcome(self, item: Due, status_code: int | None,
                 retry_after: float | None) -> tuple[DeliveryStatus, float | None]:
        if status_code is not None and 200 <= status_code < 300:
            return "delivered", None
        if status_code == 410:
            return "failed", None
        done = item.attempts + 1
        if done > len(self.backoff):
            return "failed", None
        delay = self.backoff[done - 1] * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not secrecy
        if retry_after is not None:
            delay = max(delay, retry_after)
        return "pending", time.time() + min(delay, _MAX_DELAY)


def _where(exc: BaseException) -> str:
    """The exception's type and the line that raised it: enough to find the fault, without its
    message, which may quote a URL or a row, and without a multi-line traceback."""
    frames = traceback.extract_tb(exc.__traceback__, limit=-1)
    if not frames:
        return type(exc).__name__
    frame = frames[-1]
    return f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno} in {frame.name}"


