"""Writes through an upstream remote: each instance's clone pushes a write, all of its ref moves
at once and only from where it read them, before the write is acknowledged; an instance that is
behind learns so from the refused push, fetches and checks the write again; an unreachable
upstream writes nothing anywhere."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cms.config import load_settings
from cms.editing.seed import initialise
from cms.editing.write_side import WriteSide, open_write_side
from cms.errors import PreconditionFailed
from cms.store.upstream import UpstreamUnavailable
from cms.store.wire import Endpoint

from ..conftest import SEED, fsck
from ..helpers import EDITOR, PUBLISHER, approved_draft
from .support import git_daemon

SLUG = "langgraph-vs-crewai"
OTHER = "qdrant-cloud-vs-pgvector"


def upstream_refs(path: Path) -> dict[str, str]:
    out = subprocess.run(["git", "--git-dir", str(path), "for-each-ref",
                          "--format=%(objectname) %(refname)"],
                         capture_output=True, text=True, check=True).stdout
    return {name: oid for oid, name in (line.split(" ") for line in out.splitlines())}


class Cluster:
    def __init__(self, base: Path, url: str) -> None:
        self.base = base
        self.url = url
        self.bare = base / "srv" / "upstream.git"

    def instance(self, name: str) -> WriteSide:
        settings = load_settings({}, repo=self.base / name / "content",
                                 data=self.base / name / "data", upstream=self.url)
        return open_write_side(settings)


def _seeded(tmp_path: Path) -> Path:
    settings = load_settings({}, repo=tmp_path / "srv" / "upstream.git", data=tmp_path / "seed")
    initialise(settings, SEED)
    return settings.repo


@pytest.fixture(params=["git", "path"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    bare = _seeded(tmp_path)
    if request.param == "path":
        yield Cluster(tmp_path, str(bare))
        return
    with git_daemon(tmp_path / "srv") as prefix:
        yield Cluster(tmp_path, f"{prefix}/upstream.git")


def test_a_write_is_on_the_upstream_when_it_returns(cluster: Cluster) -> None:
    a = cluster.instance("a")
    draft = approved_draft(a, SLUG, "Written through a")
    assert upstream_refs(cluster.bare)[a.layout.branch(SLUG)] == draft.commit
    assert a.documents.repo.local_refs() == upstream_refs(cluster.bare)
    fsck(cluster.bare)


def publish_from_both(a: WriteSide, b: WriteSide, bare: Path) -> None:
    """a publishes, then b, whose clone is behind: its push is refused, it fetches, and its
    publication goes on top of a's."""
    ready = approved_draft(b, OTHER, "From b")
    draft = approved_draft(a, SLUG, "From a")
    a.editor.transition(SLUG, "publish", PUBLISHER, draft.revision)
    assert b.documents.main_head() != a.documents.main_head()
    b.editor.transition(OTHER, "publish", PUBLISHER, ready.revision)
    assert b.documents.repo.local_refs() == upstream_refs(bare)
    for slug, summary in ((SLUG, "From a"), (OTHER, "From b")):
        published = b.documents.published(slug)
        assert published is not None
        assert published.comparison.summary == summary
    fsck(bare)


def test_an_instance_behind_the_upstream_fetches_and_writes_on_top(cluster: Cluster) -> None:
    publish_from_both(cluster.instance("a"), cluster.instance("b"), cluster.bare)


def test_a_write_on_a_revision_another_instance_replaced_is_refused_and_not_pushed(
        cluster: Cluster) -> None:
    a, b = cluster.instance("a"), cluster.instance("b")
    published = b.documents.published(SLUG)
    assert published is not None
    a.editor.save(SLUG, msgspec.structs.replace(published.comparison, summary="From a"),
                  EDITOR, published.revision)
    before = upstream_refs(cluster.bare)
    with pytest.raises(PreconditionFailed):
        b.editor.save(SLUG, msgspec.structs.replace(published.comparison, summary="From b"),
                      EDITOR, published.revision)
    assert upstream_refs(cluster.bare) == before
    draft = b.documents.work_in_progress(SLUG)
    assert draft is not None
    assert draft.comparison.summary == "From a"


def test_an_unreachable_upstream_answers_unavailable_and_writes_nothing(tmp_path: Path) -> None:
    bare = _seeded(tmp_path)
    with git_daemon(tmp_path / "srv") as prefix:
        a = Cluster(tmp_path, f"{prefix}/upstream.git").instance("a")
    before_local = a.documents.repo.local_refs()
    before = upstream_refs(bare)
    published = a.documents.published(SLUG)
    assert published is not None
    with pytest.raises(UpstreamUnavailable) as refused:
        a.editor.save(SLUG, msgspec.structs.replace(published.comparison, summary="Lost"),
                      EDITOR, published.revision)
    assert refused.value.status == 503
    assert "nothing was written" in refused.value.message
    assert a.documents.repo.local_refs() == before_local
    assert upstream_refs(bare) == before
    upstream = a.documents.repo.upstream
    assert upstream is not None
    assert upstream.failing  # so its leases go to instances that can write


def test_the_git_command_carries_writes_where_the_protocol_is_not_spoken_here(
        tmp_path: Path) -> None:
    bare = _seeded(tmp_path)
    cluster = Cluster(tmp_path, str(bare))
    a, b = cluster.instance("a"), cluster.instance("b")
    for side in (a, b):  # as for an https URL
        assert side.documents.repo.upstream is not None
        side.documents.repo.upstream._where = Endpoint("other")
    publish_from_both(a, b, bare)
    published = b.documents.published(OTHER)
    assert published is not None
    b.editor.save(OTHER, msgspec.structs.replace(published.comparison, summary="From b"),
                  EDITOR, published.revision)
    with pytest.raises(PreconditionFailed):
        a.editor.save(OTHER, msgspec.structs.replace(published.comparison, summary="Late"),
                      EDITOR, published.revision)
    fsck(bare)


def test_who_connects_to_the_upstream_is_never_shown() -> None:
    from cms.store.upstream import shown

    assert shown("https://cms:s3cret@git.example.com:8443/site.git") == \
        "https://***@git.example.com:8443/site.git"
    assert shown("https://ghp_t0ken@github.com/team/site.git") == \
        "https://***@github.com/team/site.git"
    assert shown("gituser:s3cret@git.example.com:/srv/site.git") == \
        "***@git.example.com:/srv/site.git"
    assert shown("https://cms:pa/ss?w#rd@git.example.com/site.git") == \
        "https://***@git.example.com/site.git"
    assert shown("git://127.0.0.1:9418/site.git") == "git://127.0.0.1:9418/site.git"
    assert shown("/srv/git/site.git") == "/srv/git/site.git"


def test_an_instance_behind_the_client_catches_up_before_refusing(cluster: Cluster) -> None:
    """A client writes through a, then at once through b with the revision a answered: b has
    not fetched it yet, and fetches rather than call it stale (or the draft missing)."""
    a, b = cluster.instance("a"), cluster.instance("b")
    published = a.documents.published(SLUG)
    assert published is not None
    first = a.editor.save(SLUG, msgspec.structs.replace(published.comparison, summary="On a"),
                          EDITOR, published.revision)
    second = b.editor.save(SLUG, msgspec.structs.replace(first.comparison, summary="On b"),
                           EDITOR, first.revision)
    assert upstream_refs(cluster.bare)[b.layout.branch(SLUG)] == second.commit
    assert b.documents.repo.read_commit(second.commit).parents[0] == first.commit


class LostAnswer:
    """A receive-pack conversation whose answer never reaches the instance. With ``deliver``
    the commands and the pack reach the upstream (which takes them); without, they are never
    sent."""

    def __init__(self, inner: Any, deliver: bool, said: str | None = None) -> None:
        self.inner = inner
        self.deliver = deliver
        self.said = said  # what the transport complains of instead of the answer
        self.sent = 0
        self.first = b""  # the commands, as sent
        self.everything = bytearray()  # the commands and the pack

    def send(self, data: bytes) -> None:
        self.sent += 1
        if not self.first:
            self.first = bytes(data)
        self.everything += data
        if self.deliver:
            self.inner.send(data)

    def receive(self) -> bytes:
        if self.sent == 0:
            return bytes(self.inner.receive())  # the advertisement
        while self.deliver and self.inner.receive():
            pass  # the upstream's report, read to its end and dropped
        if self.said is not None:
            from cms.store import wire

            raise wire.Refused(self.said)  # as ssh says "Connection closed" on stderr
        return b""

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize(("deliver", "said"), [(True, None), (False, None),
                                               (True, "Connection to host closed")],
                         ids=["stood", "never-sent", "stood-then-transport-error"])
def test_a_push_whose_answer_is_lost_is_written_once(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch, deliver: bool,
        said: str | None) -> None:
    from cms.store import wire

    a = cluster.instance("a")
    connect = wire.connect
    lost: list[LostAnswer] = []

    def once(where: Endpoint, service: str, timeout: float) -> Any:
        channel = connect(where, service, timeout)
        if service == "git-receive-pack" and not lost:
            lost.append(LostAnswer(channel, deliver, said))
            return lost[0]
        return channel

    monkeypatch.setattr(wire, "connect", once)
    saved_once(cluster, a, "Once")
    assert lost, "the push went through the lossy conversation"


def saved_once(cluster: Cluster, a: WriteSide, summary: str) -> None:
    """Save ``SLUG`` on ``a`` with ``summary``: its commit is on the upstream, one commit above
    the published one, whatever became of the pushes on the way."""
    published = a.documents.published(SLUG)
    assert published is not None
    draft = a.editor.save(SLUG, msgspec.structs.replace(published.comparison, summary=summary),
                          EDITOR, published.revision)
    head = upstream_refs(cluster.bare)[a.layout.branch(SLUG)]
    assert head == draft.commit
    count = subprocess.run(["git", "--git-dir", str(cluster.bare), "rev-list", "--count",
                            f"{published.commit}..{head}"], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert count == "1"
    fsck(cluster.bare)


def test_an_upstream_that_drops_every_answer_is_uncertain_and_nothing_is_planned_again(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    from cms.store import wire
    from cms.store.upstream import PUSH_ATTEMPTS, UpstreamUnavailable

    a = cluster.instance("a")
    before = upstream_refs(cluster.bare)
    connect = wire.connect
    dropped: list[LostAnswer] = []

    def dropping(where: Endpoint, service: str, timeout: float) -> Any:
        channel = connect(where, service, timeout)
        if service == "git-receive-pack":
            dropped.append(LostAnswer(channel, deliver=False))
            return dropped[-1]
        return channel

    monkeypatch.setattr(wire, "connect", dropping)
    published = a.documents.published(SLUG)
    assert published is not None
    with pytest.raises(UpstreamUnavailable) as raised:
        a.editor.save(SLUG, msgspec.structs.replace(published.comparison, summary="Never"),
                      EDITOR, published.revision)
    # The same commands, sent again while nothing had landed; then the client is told the
    # write may stand (the upstream might still be applying one of them).
    assert len(dropped) == PUSH_ATTEMPTS
    assert len({bytes(channel.first) for channel in dropped}) == 1
    assert raised.value.code == "upstream_unavailable"
    assert raised.value.details.get("uncertain") is True
    assert upstream_refs(cluster.bare) == before
    assert a.documents.repo.local_refs() == before
    fsck(cluster.bare)


def test_a_push_that_lands_after_its_answer_was_lost_is_written_once(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The upstream takes the first push only after the instance gave up on its answer and
    found the refs unchanged (it was still running its hooks): the write lands once, and the
    client is told it stands."""
    from cms.store import wire

    a = cluster.instance("a")
    connect = wire.connect
    lost: list[LostAnswer] = []

    def late(where: Endpoint, service: str, timeout: float) -> Any:
        if service == "git-receive-pack" and len(lost) == 1:
            # The first push reaches the upstream now, before the second is sent.
            replay = connect(where, service, timeout)
            replay.receive()
            replay.send(bytes(lost[0].everything))
            while replay.receive():
                pass
            replay.close()
        channel = connect(where, service, timeout)
        if service == "git-receive-pack" and not lost:
            lost.append(LostAnswer(channel, deliver=False))
            return lost[0]
        return channel

    monkeypatch.setattr(wire, "connect", late)
    saved_once(cluster, a, "Late")


def test_an_instance_behind_the_outbox_leaves_its_cursor_where_a_further_one_put_it(
        cluster: Cluster) -> None:
    """Instances share one outbox: one whose clone has not fetched a publication yet neither
    takes main for rewritten nor sets the cursor back; once it has, it records nothing twice."""
    from cms.webhooks.events import MAIN_CURSOR, Recorder
    from cms.webhooks.store import WebhookStore

    a, b = cluster.instance("a"), cluster.instance("b")
    store = WebhookStore.open(load_settings({}, data=cluster.base / "shared-outbox"))
    first = Recorder(a.documents, store, "http://cms.test", a.workflows)
    second = Recorder(b.documents, store, "http://cms.test", b.workflows)
    assert first.catch_up() == 0  # a new outbox starts at the present
    draft = approved_draft(a, SLUG, "Published on a")
    a.editor.transition(SLUG, "publish", PUBLISHER, draft.revision)
    head = a.documents.main_head()
    assert head is not None
    first.catch_up()
    assert store.cursor(MAIN_CURSOR) == head
    assert b.documents.main_head() != head  # b is behind
    assert second.catch_up() == 0
    assert store.cursor(MAIN_CURSOR) == head
    b.documents.repo.fetch()
    assert second.catch_up() == 0
    assert store.cursor(MAIN_CURSOR) == head
    store.close()


def test_a_transition_through_another_instance_right_after_a_create_finds_it(
        cluster: Cluster) -> None:
    a, b = cluster.instance("a"), cluster.instance("b")
    published = a.documents.published(SLUG)
    assert published is not None
    fresh = msgspec.structs.replace(published.comparison, slug="fresh-one-vs-other",
                                    title="Fresh one vs other")
    created = a.editor.create(fresh, EDITOR)
    submitted = b.editor.transition("fresh-one-vs-other", "submit", EDITOR, created.revision)
    assert upstream_refs(cluster.bare)[b.layout.branch("fresh-one-vs-other")] == \
        submitted.commit


def test_refs_an_upstream_names_without_sending_their_objects_are_not_taken(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upstream that advertises a commit and sends something else: the clone keeps its refs
    (which lead somewhere) and the fetch fails, rather than point main at nothing."""
    from cms.store.upstream import Upstream

    a = cluster.instance("a")
    before = a.documents.repo.local_refs()
    forged = "ab" * 20

    def advertise_only(self: Upstream, choose: Any) -> dict[str, str]:
        refs = dict(before, **{"refs/heads/main": forged})
        choose(refs)
        return refs

    monkeypatch.setattr(Upstream, "fetch_objects", advertise_only)
    with pytest.raises(UpstreamUnavailable, match="do not hold what its refs name"):
        a.documents.repo.fetch()
    assert a.documents.repo.local_refs() == before
    fsck(a.documents.repo.git_dir)
