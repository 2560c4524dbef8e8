"""The server while its app is still being built: published reads are answered at once.

Importing the framework and registering every route takes most of a start (about 0.4 s of 0.55
on a small machine), and a new replica's first reader, or a frontend's rebuild right after a
restart, waited for all of it although a read of one comparison needs none of it. So the server
listens first and builds the app in a worker thread. Meanwhile an anonymous ``GET`` of one
published comparison, with nothing the route would look at beyond the slug and one
``If-None-Match``, is answered here by the route's own code (``published_read``), byte for
byte what the route sends. Anything else waits until the app is built, and then goes to it.

The app's own lifespan (its start-up: the catalogue's fill, the webhook outbox, the scheduler)
is driven from here once it is built, as the server would drive it, and stopped before this
one's lifespan reports the shutdown complete. If the app cannot be built or started, the
server is told to stop; requests still waiting are answered 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from ..content.model import SLUG_RE
from ..errors import CmsError
from .http import send_json
from .published_read import read_answer
from .services import Services

log = logging.getLogger("cms")

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Any]],
                    Callable[[Any], Awaitable[None]]], Awaitable[None]]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]

_READ = re.compile(r"/api/comparisons/(" + SLUG_RE.removeprefix("^").removesuffix(r"\Z") + r")")
# Headers that make the route do more than read the slug: a token to check, a write's
# precondition, a body.
_ROUTED_HEADERS = frozenset({b"authorization", b"if-match", b"content-length",
                             b"transfer-encoding", b"content-type"})
_APP_LIFESPAN_END_SECONDS = 10.0
_NEVER = datetime.max.replace(tzinfo=UTC)
_UNAVAILABLE = msgspec.json.encode({"status": 503, "code": "unavailable",
                                    "message": "the server could not start; try again later"})


class Starting:
    def __init__(self, services: Services, build: Callable[[], ASGIApp],
                 give_up: Callable[[], None]) -> None:
        """``give_up`` is called when the app cannot be built or started: it stops the server."""
        self.services = services
        self._build = build
        self.app: ASGIApp | None = None
        self.failed = False
        self.answered_early = 0
        self.give_up = give_up
        self._built: asyncio.Event | None = None
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._app_lifespan: asyncio.Task[None] | None = None
        # Reads are answered early until then (see ``_lifespan``); a replica runs no schedule.
        self._early_until: datetime | None = _NEVER if services.settings.read_only else None
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        app = self.app
        if app is not None:
            await app(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        elif not (scope["type"] == "http" and await self._read_early(scope, send)):
            await self._when_built(scope, receive, send)

    async def _when_built(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if self._built is not None:
            try:
                await self._built.wait()
            except asyncio.CancelledError:
                # The server stops at once (a second Ctrl-C) before the app was built: an
                # answer, not a trace in the log.
                await _unavailable(scope, send)
                return
        if self.app is not None:
            await self.app(scope, receive, send)
        else:
            await _unavailable(scope, send)

    # Reads before the app is built

    @staticmethod
    def _early_slug(scope: dict[str, Any]) -> str | None:
        """The slug of a read answered here, or None when the app is the one to answer."""
        if scope["method"] != "GET" or scope["query_string"]:
            return None
        found = _READ.fullmatch(scope["path"])
        if found is None or not 3 <= len(found[1]) <= 120:
            return None
        seen = 0
        for name, _value in scope["headers"]:
            if name in _ROUTED_HEADERS:
                return None
            seen += name == b"if-none-match"
        return found[1] if seen <= 1 else None

    def _run_due(self) -> datetime | None:
        """Carry out what is due; when the next schedule falls due (``_NEVER`` if none is
        pending; None if the schedules cannot be read, when no read is answered early).
        One still pending though due (it failed for now, or another instance holds the
        schedules' lease) does not count: the app's start-up would carry it out no sooner."""
        scheduler = self.services.scheduler
        ran_at = datetime.now(UTC)
        scheduler.run_due()
        try:
            return scheduler.next_due(after=ran_at) or _NEVER
        except (CmsError, OSError, sqlite3.Error) as exc:  # the app's scheduler reports it
            log.warning("the schedules could not be read (%s); reads wait for the app", exc)
        except Exception:
            log.exception("the schedules could not be read; reads wait for the app")
        return None

    async def _read_early(self, scope: dict[str, Any], send: Send) -> bool:
        """Answer a published read here; whether it was (else the app answers it)."""
        slug = self._early_slug(scope)
        if slug is None:
            return False
        if self._early_until is None or self.clock() >= self._early_until:
            return False  # a schedule may be due: the app's scheduler carries it out first
        tag = next((value.decode("latin-1") for name, value in scope["headers"]
                    if name == b"if-none-match"), None)
        try:
            answer = read_answer(self.services, slug, tag)
        except CmsError:  # not published, say: the route's answer, in its own terms
            answer = None
        except Exception as exc:  # the route meets it again, and answers it
            log.warning("an early read went to the app after %s", type(exc).__name__)
            answer = None
        if answer is None:
            return False
        self.answered_early += 1
        await send_json(send, answer.headers, answer.body)
        return True

    # The lifespans: this one's, and the app's once it is built

    async def _lifespan(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        self._built = asyncio.Event()
        if not self.services.settings.read_only:
            # What fell due while no server ran (a takedown, say) is carried out before
            # anything is served, as the app's start-up would; and reads are answered here
            # only until the next schedule falls due, which the app's scheduler carries out.
            self._early_until = await in_thread(self._run_due, "cms-due-schedules",
                                                abandon=False)
        building = asyncio.create_task(self._build_and_start(scope))
        await send({"type": "lifespan.startup.complete"})
        try:
            await receive()  # lifespan.shutdown: the only message left
            await building
        except asyncio.CancelledError:  # stopped at once: nothing of the app to stop
            building.cancel()
            return
        if self._app_lifespan is not None:
            await self._to_app.put({"type": "lifespan.shutdown"})
            try:
                reply = await self._reply_of_app()
            except RuntimeError as exc:
                reply = {"type": "lifespan.shutdown.failed", "message": str(exc)}
            if reply is not None and reply["type"] != "lifespan.shutdown.complete":
                log.error("the app did not stop cleanly: %s", reply.get("message", ""))
        await send({"type": "lifespan.shutdown.complete"})

    async def _build_and_start(self, scope: dict[str, Any]) -> None:
        assert self._built is not None
        try:
            # Abandoned if the server stops at once: it need not wait for the thread.
            app = await in_thread(self._build, "cms-app-build", abandon=True)
            await self._to_app.put({"type": "lifespan.startup"})

            async def app_lifespan() -> None:
                await app(scope, self._to_app.get, self._from_app.put)

            self._app_lifespan = asyncio.create_task(app_lifespan())
            reply = await self._reply_of_app()
            if reply is None or reply["type"] != "lifespan.startup.complete":
                raise RuntimeError(reply.get("message", "") if reply else "its lifespan ended")
            self.app = app
        except Exception as exc:
            self.failed = True
            log.error("the app could not start: %s: %s", type(exc).__name__, exc)
            await self._end_app_lifespan()
            if not self.services.settings.read_only:
                # The schedules' lease taken before serving: another instance runs them now.
                self.services.scheduler.stop()
            self.give_up()
        finally:
            self._built.set()

    async def _end_app_lifespan(self) -> None:
        """After a failed start: the app's lifespan ends (it reported the failure), and what it
        raised is taken here, having been told already."""
        task, self._app_lifespan = self._app_lifespan, None
        if task is not None:
            # Bounded: a lifespan that went on after reporting a failure is cancelled.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, _APP_LIFESPAN_END_SECONDS)

    async def _reply_of_app(self) -> dict[str, Any] | None:
        """The app's next lifespan message; None if its lifespan ended without one."""
        assert self._app_lifespan is not None
        reply = asyncio.ensure_future(self._from_app.get())
        await asyncio.wait({reply, self._app_lifespan}, return_when=asyncio.FIRST_COMPLETED)
        if reply.done():
            return reply.result()
        reply.cancel()
        if not self._app_lifespan.cancelled() and self._app_lifespan.exception() is not None:
            raise RuntimeError(str(self._app_lifespan.exception()))
        return None


async def _unavailable(scope: dict[str, Any], send: Send) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_UNAVAILABLE)).encode())]})
        await send({"type": "http.response.body", "body": _UNAVAILABLE, "more_body": False})


_T = TypeVar("_T")


async def in_thread(work: Callable[[], _T], name: str, *, abandon: bool) -> _T:
    """``work``'s result, made in a thread of its own. Cancelled, the wait ends at once when
    ``abandon`` (the thread is then a daemon: a server stopping need not wait for it), else
    only once the work is done, however often it is cancelled (a due takedown's commit is
    not cut short by a stopping server).

    Not the framework's thread pool: its first use costs a start about 30 ms (importing the
    async library's backend), while the first read waits."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[_T] = loop.create_future()

    def run() -> None:
        outcome: Callable[[], None]
        try:
            result = work()
        except BaseException as exc:  # handed to the waiter, as a thread pool would
            outcome = functools.partial(_fail, done, exc)
        else:
            outcome = functools.partial(_give, done, result)
        # A loop closed meanwhile has nobody waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(outcome)

    threading.Thread(target=run, name=name, daemon=abandon).start()
    if abandon:
        return await done
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        while not done.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({done})
        if not done.cancelled() and done.exception() is not None:  # nobody else hears of it
            log.error("%s failed while the server stopped: %s", name, done.exception())
        raise


def _give(done: asyncio.Future[_T], result: _T) -> None:
    if not done.cancelled():
        done.set_result(result)


def _fail(done: asyncio.Future[_T], error: BaseException) -> None:
    if not done.cancelled():
        done.set_exception(error)
