"""A client that walks comparisons through the workflow at random, as an editor, a reviewer and
a publisher would, and records every write it sends in a ledger.

Each step reads a comparison, picks a write the state allows and sends it with the revision it
read; other walkers on the same comparisons make many of those writes stale, which the server
must refuse (409/412) without writing anything.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

from .support import Call, Headers, Ledger, Retry, edited, new_comparison, send, strip_etag

# The writes each state allows, with how often a walker picks them. "unpublish_live" unpublishes
# the published version while a next revision is in progress (If-Match: the public ETag).
CHOICES: dict[str, list[tuple[str, int]]] = {
    "draft": [("edit", 3), ("submit", 4), ("discard", 1), ("revert", 1), ("unpublish_live", 1)],
    "in_review": [("approve", 4), ("request_changes", 1), ("withdraw", 1), ("discard", 1),
                  ("unpublish_live", 1)],
    "changes_requested": [("edit", 2), ("submit", 3), ("withdraw", 1), ("discard", 1),
                          ("revert", 1)],
    "approved": [("publish", 5), ("request_changes", 1), ("withdraw", 1), ("discard", 1),
                 ("unpublish_live", 1)],
    "published": [("edit", 3), ("unpublish", 2), ("revert", 1)],
    "unpublished": [("publish", 3), ("edit", 2), ("revert", 1)],
}
ROLE_OF = {"submit": "editor", "withdraw": "editor", "approve": "reviewer",
           "request_changes": "reviewer", "publish": "publisher", "unpublish": "publisher"}


@dataclass
class Walker:
    name: str
    rng: random.Random
    ledger: Ledger
    writer: httpx.Client  # the server this walker writes through
    writer_name: str
    readers: list[tuple[str, httpx.Client]]  # where it reads (any server)
    people: dict[str, tuple[Headers, str]]  # role -> (headers, email)
    template: dict[str, Any]
    own: list[str]
    shared: list[str]
    own_share: float = 0.35
    retry: Retry | None = None
    max_tries: int = 1
    stop: threading.Event = field(default_factory=threading.Event)
    problems: list[str] = field(default_factory=list)
    reads: int = 0
    read_from: str = ""

    def run(self, steps: int) -> None:
        try:
            for _ in range(steps):
                if self.stop.is_set():
                    return
                self.step()
        except Exception as exc:  # recorded, so that the test fails with it rather than hangs
            self.problems.append(f"{self.name} crashed: {type(exc).__name__}: {exc}")

    # One step

    def step(self) -> None:
        slug = (self.rng.choice(self.own) if self.own and self.rng.random() < self.own_share
                else self.rng.choice(self.shared))
        read = self._read(f"/api/drafts/{slug}", self.people["editor"][0])
        if read is None:
            return
        if read.status_code == 404 and "no object" in read.text:
            # Not "no such comparison": the object store failed to find an object main or a
            # branch points at (the server reading while the other one writes or repacks).
            self.problems.append(f"{self.name}: reading {slug} from {self.read_from} answered "
                                 f"a false 404: {read.text[:300]}")
            return
        if read.status_code == 404:
            self.create(slug).note = (f"(after a read from {self.read_from} that answered 404: "
                                      f"{read.text[:300]})")
            return
        if read.status_code != 200:
            self.problems.append(f"{self.name}: reading {slug} answered {read.status_code}: "
                                 f"{read.text[:300]}")
            return
        document = read.json()
        etag = strip_etag(read.headers.get("etag"))
        options = CHOICES.get(document["state"], [])
        if not options:
            self.problems.append(f"{self.name}: {slug} is in unknown state {document['state']}")
            return
        action = self.rng.choices([a for a, _ in options], [w for _, w in options])[0]
        self.act(slug, action, document, etag)

    def act(self, slug: str, action: str, document: dict[str, Any], etag: str | None) -> None:
        if action == "edit":
            self.edit(slug, document, etag)
        elif action == "discard":
            self.discard(slug, etag)
        elif action == "revert":
            self.revert(slug, etag)
        elif action == "unpublish_live":
            # From the process this walker writes through: another process follows main's
            # ref only every 50 ms, and its ETag may be that much behind.
            public = self._read(f"/api/comparisons/{slug}", None, own_server=True)
            if public is not None and public.status_code == 200:
                self.transition(slug, "unpublish", strip_etag(public.headers.get("etag")))
        else:
            self.transition(slug, action, etag)

    # Writes

    def create(self, slug: str) -> Call:
        headers, email = self.people["editor"]
        call = self.ledger.open(self.name, self.writer_name, "create", slug, email, None)
        return self._send(call, "POST", "/api/drafts", headers,
                          new_comparison(self.template, slug, call.req_id))

    def edit(self, slug: str, document: dict[str, Any], etag: str | None) -> Call:
        headers, email = self.people["editor"]
        call = self.ledger.open(self.name, self.writer_name, "edit", slug, email, etag)
        return self._send(call, "PUT", f"/api/drafts/{slug}", headers,
                          edited(document, call.req_id))

    def discard(self, slug: str, etag: str | None) -> Call:
        headers, email = self.people["editor"]
        call = self.ledger.open(self.name, self.writer_name, "discard", slug, email, etag)
        return self._send(call, "DELETE", f"/api/drafts/{slug}", headers, None)

    def revert(self, slug: str, etag: str | None) -> Call | None:
        history = self._read(f"/api/comparisons/{slug}/history?limit=30",
                             self.people["auditor"][0])
        if history is None or history.status_code != 200:
            if history is not None:
                self.problems.append(f"{self.name}: history of {slug} answered "
                                     f"{history.status_code}: {history.text[:300]}")
            return None
        entries = history.json()["entries"]
        if not entries:
            self.problems.append(f"{self.name}: {slug} exists but has no history")
            return None
        target = self.rng.choice(entries)["sha"]
        headers, email = self.people["editor"]
        call = self.ledger.open(self.name, self.writer_name, "revert", slug, email, etag)
        return self._send(call, "POST", f"/api/drafts/{slug}/revert", headers,
                          {"to": target, "comment": call.req_id})

    def transition(self, slug: str, action: str, etag: str | None) -> Call:
        headers, email = self.people[ROLE_OF[action]]
        call = self.ledger.open(self.name, self.writer_name, action, slug, email, etag)
        return self._send(call, "POST", f"/api/drafts/{slug}/transitions", headers,
                          {"action": action, "comment": call.req_id})

    # Plumbing

    def _send(self, call: Call, method: str, path: str, headers: Headers,
              body: dict[str, Any] | None) -> Call:
        return send(self.writer, self.ledger, call, method, path, headers, body,
                    retry=self.retry, max_tries=self.max_tries)

    def _read(self, path: str, headers: Headers | None, *, own_server: bool = False
              ) -> httpx.Response | None:
        """A read from one of the servers (or the one this walker writes through); with
        ``retry``, read again after a lost connection. A 5xx is a problem."""
        name, client = ((self.writer_name, self.writer) if own_server
                        else self.rng.choice(self.readers))
        self.read_from = name
        for tries in range(1, self.max_tries + 1):
            try:
                answer = client.get(path, headers=headers)
            except httpx.TransportError as exc:
                if self.retry is None or tries >= self.max_tries or not self.retry(exc, tries):
                    self.problems.append(f"{self.name}: reading {path} from {name} failed: "
                                         f"{type(exc).__name__}: {exc}")
                    return None
                continue
            self.reads += 1
            if answer.status_code >= 500:
                self.problems.append(f"{self.name}: reading {path} from {name} answered "
                                     f"{answer.status_code}: {answer.text[:300]}")
                return None
            return answer
        return None
