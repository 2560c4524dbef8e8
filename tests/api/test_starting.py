"""The server while its app is built: published reads answered at once, byte for byte what the
app sends; everything else answered by the app once it is built; a failed build stops it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cms.api.app import create_app
from cms.api.published_read import read_answer
from cms.api.services import Services, build_services
from cms.api.starting import Starting, in_thread
from cms.config import Settings

from ..conftest import HAIKU, make_tokens

Messages = list[dict[str, Any]]
READ = f"/api/comparisons/{HAIKU}"


def scope_of(path: str, *headers: tuple[bytes, bytes], method: str = "GET",
             query: bytes = b"") -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query, "root_path": "", "headers": [(b"host", b"cms.test"), *headers],
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80), "state": {}}


async def call(app: Any, scope: dict[str, Any]) -> Messages:
    sent: Messages = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


class Server:
    """A lifespan driven as the server drives it, around ``Starting``."""

    def __init__(self, starting: Starting) -> None:
        self.starting = starting
        self.to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async def lifespan() -> None:
            await self.starting({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                self.to_app.get, self.from_app.put)

        self.task = asyncio.create_task(lifespan())
        await self.to_app.put({"type": "lifespan.startup"})
        assert (await self.from_app.get())["type"] == "lifespan.startup.complete"

    async def built(self) -> None:
        assert self.starting._built is not None
        await self.starting._built.wait()

    async def stop(self) -> None:
        await self.to_app.put({"type": "lifespan.shutdown"})
        assert (await self.from_app.get())["type"] == "lifespan.shutdown.complete"
        assert self.task is not None
        await self.task


def held_build(settings: Settings, services: Services, release: threading.Event,
               stopped: list[str]) -> Callable[[], Any]:
    """The app's build, held until ``release``; its shutdown is recorded in ``stopped``."""
    def build() -> Any:
        assert release.wait(timeout=120)
        app = create_app(settings, services)
        app.on_shutdown.append(lambda: stopped.append("app"))
        return app

    return build


def held_start(settings: Settings,
               services: Services | None = None) -> tuple[Starting, threading.Event]:
    """A start whose build waits for the event returned."""
    services = build_services(settings) if services is None else services
    release = threading.Event()
    return Starting(services, held_build(settings, services, release, []), lambda: None), release


async def read_early(starting: Starting) -> Server:
    """A server of ``starting`` begun, and a first read answered before the app is built."""
    server = Server(starting)
    await server.start()
    assert (await call(starting, scope_of(READ)))[0]["status"] == 200
    assert starting.answered_early == 1
    return server


def with_takedown(settings: Settings, due: datetime) -> Services:
    """The services, with the comparison's takedown scheduled for ``due`` (made an hour
    before it, as the clock then allowed)."""
    services = build_services(settings)
    make_tokens(settings)
    publisher = next(r for r in services.tokens.all() if r.email == "paul@example.com")
    live = read_answer(services, HAIKU, None).headers["ETag"].strip('"')
    services.schedules.schedule(HAIKU, "unpublish", due, publisher.actor(), live,
                                now=due - timedelta(hours=1))
    return services


def test_reads_are_answered_while_the_app_is_built_as_the_app_answers_them(
        settings: Settings, repo_path: object) -> None:
    services = build_services(settings)
    tokens = make_tokens(settings)
    release = threading.Event()
    stopped: list[str] = []
    starting = Starting(services, held_build(settings, services, release, stopped), lambda: None)

    async def run() -> None:
        server = Server(starting)
        await server.start()
        early = await call(starting, scope_of(READ))
        assert early[0]["status"] == 200
        etag = dict(early[0]["headers"])[b"etag"]
        early_304 = await call(starting, scope_of(READ, (b"if-none-match", etag)))
        assert early_304[0]["status"] == 304
        assert starting.answered_early == 2
        # What the route does more with, or another route: the app's, once built.
        waiting = [asyncio.create_task(call(starting, scope)) for scope in (
            scope_of("/api/comparisons/no-such-one"),
            scope_of(READ, method="HEAD"),
            scope_of(READ, query=b"x=1"),
            scope_of(READ, (b"authorization", tokens["auditor"]["Authorization"].encode())),
            scope_of(READ, (b"if-none-match", etag), (b"if-none-match", b'"other"')),
            scope_of(f"{READ}/history",
                     (b"authorization", tokens["auditor"]["Authorization"].encode())),
            scope_of("/health"))]
        await asyncio.sleep(0)  # a turn of the loop: none can finish before the build
        assert not any(task.done() for task in waiting)
        assert starting.app is None
        release.set()
        await server.built()
        assert starting.app is not None
        answers = [await task for task in waiting]
        assert [answer[0]["status"] for answer in answers] == [404, 200, 200, 200, 304, 200, 200]
        assert starting.answered_early == 2
        # Byte for byte what the app sends for the same requests.
        assert early == await call(starting.app, scope_of(READ))
        assert early_304 == await call(starting.app, scope_of(READ, (b"if-none-match", etag)))
        await server.stop()
        assert stopped == ["app"]

    asyncio.run(run())


@pytest.mark.parametrize("failing", ["build", "start-up"])
def test_an_app_that_cannot_start_stops_the_server_and_waiting_requests_get_503(
        settings: Settings, repo_path: object, failing: str) -> None:
    services = build_services(settings)

    def build() -> Any:
        if failing == "build":
            raise ValueError("no app today")
        app = create_app(settings, services)

        def fail() -> None:
            raise ValueError("no start today")

        app.on_startup.append(fail)
        return app

    gave_up: list[bool] = []
    starting = Starting(services, build, lambda: gave_up.append(True))

    async def run() -> None:
        server = Server(starting)
        await server.start()
        await server.built()
        assert starting.failed
        assert gave_up == [True]
        answer = await call(starting, scope_of("/health"))
        assert answer[0]["status"] == 503
        assert b'"code":"unavailable"' in answer[1]["body"]
        await server.stop()

    asyncio.run(run())


def test_a_takedown_due_while_no_server_ran_is_carried_out_before_a_read_is_answered(
        settings: Settings, repo_path: object) -> None:
    starting, release = held_start(
        settings, with_takedown(settings, datetime.now(UTC) - timedelta(minutes=30)))

    async def run() -> None:
        server = Server(starting)
        await server.start()
        read = asyncio.create_task(call(starting, scope_of(READ)))
        await asyncio.sleep(0)  # a turn of the loop: it cannot be answered before the build
        assert not read.done()
        release.set()
        assert (await read)[0]["status"] == 404
        assert starting.answered_early == 0
        await server.stop()

    asyncio.run(run())


def test_reads_are_answered_early_only_until_the_next_schedule_falls_due(
        settings: Settings, repo_path: object) -> None:
    """A takedown that falls due while the app is still being built (seconds, under load) is
    the app's scheduler's to carry out: from then on reads wait for the app, not served the
    comparison still."""
    due = datetime.now(UTC) + timedelta(hours=1)
    starting, release = held_start(settings, with_takedown(settings, due))

    async def run() -> None:
        server = await read_early(starting)
        # The takedown is due now (schedules are kept to the second).
        starting.clock = lambda: due + timedelta(seconds=1)
        read = asyncio.create_task(call(starting, scope_of(READ)))
        await asyncio.sleep(0)  # a turn of the loop: not answered before the build
        assert not read.done()
        release.set()
        await read
        assert starting.answered_early == 1
        await server.stop()

    asyncio.run(run())


def test_a_schedule_left_overdue_does_not_stop_early_reads(
        settings: Settings, repo_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A schedule still pending though due (another instance holds the schedules' lease, or
    it fails for now) is not carried out by the app's start-up either: reads are answered
    early all the same."""
    services = with_takedown(settings, datetime.now(UTC) - timedelta(minutes=30))
    monkeypatch.setattr(services.scheduler, "run_due", lambda: [])  # the lease is elsewhere
    starting, release = held_start(settings, services)

    async def run() -> None:
        server = await read_early(starting)
        release.set()
        await server.built()
        await server.stop()

    asyncio.run(run())


def test_a_request_waiting_for_the_app_when_the_server_stops_at_once_gets_503(
        settings: Settings, repo_path: object) -> None:
    starting, release = held_start(settings)

    async def run() -> None:
        server = Server(starting)
        await server.start()
        sent: Messages = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        waiting = asyncio.create_task(starting(scope_of("/health"), receive, send))
        await asyncio.sleep(0)  # a turn of the loop: it waits for the build
        waiting.cancel()
        await waiting
        assert sent[0]["status"] == 503
        release.set()
        await server.built()
        await server.stop()

    asyncio.run(run())


def test_ctrl_c_stops_the_server_quietly(settings: Settings, repo_path: object,
                                         tmp_path: Path) -> None:
    env = {**os.environ, "CMS_REPO": str(settings.repo), "CMS_DATA": str(settings.data),
           "CMS_PORT": "0"}
    with subprocess.Popen([sys.executable, "-m", "cms", "serve"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as server:
        assert server.stdout is not None
        url = server.stdout.readline().split()[2]
        assert httpx.get(f"{url}/health", timeout=60).status_code == 200
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 130
    assert "Traceback" not in err


def test_a_lifespan_cancelled_while_the_server_runs_ends_quietly(
        settings: Settings, repo_path: object) -> None:
    """The server stopped at once (a second Ctrl-C) cancels the lifespan: it ends, no trace."""
    starting, release = held_start(settings)

    async def run() -> None:
        server = Server(starting)
        await server.start()
        assert server.task is not None
        server.task.cancel()
        await server.task  # returns: the cancellation is the lifespan's end
        release.set()

    asyncio.run(run())


def test_work_in_a_thread_hands_back_its_result_or_its_error() -> None:
    def fails() -> None:
        raise ValueError("no")

    async def run() -> None:
        assert await in_thread(lambda: threading.current_thread().name, "named",
                               abandon=False) == "named"
        with pytest.raises(ValueError, match="no"):
            await in_thread(fails, "failing", abandon=True)

    asyncio.run(run())


@pytest.mark.parametrize(("abandon", "cancels"), [(False, 1), (False, 2), (True, 1)])
def test_a_cancelled_wait_for_a_thread_ends_at_once_only_when_abandoned(
        abandon: bool, cancels: int) -> None:
    release, finished = threading.Event(), threading.Event()

    def work() -> None:
        assert release.wait(timeout=60)
        finished.set()

    async def run() -> None:
        waiting = asyncio.create_task(in_thread(work, "held", abandon=abandon))
        await asyncio.sleep(0)  # the task is waiting for the thread
        if abandon:
            waiting.cancel()
            # Ends while the work is still held (else this would wait out the bound).
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(waiting, 5)
            assert not finished.is_set()
            release.set()
            return
        for _ in range(cancels):
            waiting.cancel()
            await asyncio.sleep(0)  # the cancel delivered: still waiting for the work
            assert not waiting.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert finished.is_set()

    asyncio.run(run())
