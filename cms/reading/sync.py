"""Incremental sync for frontends, computed from git.

A sync token names a commit of main. Given one, the changes since are the files that differ
between that commit's tree and main's, found by comparing trees (unchanged folders are skipped by
id), so the cost follows the size of the change, not of the repository. Pages of a large answer
are all computed against the same target commit, so a client never sees a mix of two states.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import msgspec
from msgspec import Struct

from .. import urlsafe
from ..content.model import Comparison
from ..errors import BadRequest, CmsError, Gone
from ..identity.keys import ForgedToken, sign, unsign
from ..store.documents import Documents
from ..store.repository import changed_files


class SyncTokenGone(Gone):
    """The token names a commit this repository's main never had: the client must start over."""

    code = "sync_token_gone"


class _Position(Struct, frozen=True):
    target: str  # the commit of main this sync answers up to
    base: str | None  # the commit the client had, None for a full sync
    offset: int = 0


class SyncPage(Struct, frozen=True, kw_only=True):
    items: list[tuple[Comparison, str]]  # (comparison, blob id)
    deleted: list[str]
    next_sync: str | None
    next_page: str | None
    commit: str | None


class Sync:
    """Pages of what changed on main, under tokens signed with ``key``."""

    def __init__(self, documents: Documents, key: bytes) -> None:
        self.documents = documents
        self.key = key

    def token(self, commit: str) -> str:
        return _encode(self.key, _Position(target=commit, base=None))

    def page(self, *, token: str | None, page: str | None, limit: int,
             decode: Callable[[str], Comparison] | None = None) -> SyncPage:
        return _sync(self.documents, self.key, token=token, page=page, limit=limit,
                     decode=decode)


def _sync(documents: Documents, key: bytes, *, token: str | None, page: str | None, limit: int,
          decode: Callable[[str], Comparison] | None = None) -> SyncPage:
    """A page of what changed on main since ``token`` (or of everything); ``decode`` reads a
    blob's comparison (the published index's, which has them decoded already)."""
    decode = decode or documents.decode_blob
    if page is not None:
        position = _decode(key, page, "page")
        _check_known(documents, position.target)
    elif token is not None:
        base = _decode(key, token, "token").target
        head = documents.main_head()
        if head is None:
            raise SyncTokenGone("the repository has no published content; sync from the start")
        _check_ancestor(documents, base, head)
        position = _Position(target=head, base=base)
    else:
        head = documents.main_head()
        if head is None:
            return SyncPage(items=[], deleted=[], next_sync=None, next_page=None, commit=None)
        position = _Position(target=head, base=None)
    changes = sorted(_changes(documents, position).items())
    window = changes[position.offset : position.offset + limit]
    items: list[tuple[Comparison, str]] = []
    deleted: list[str] = []
    for slug, blob in window:
        if blob is None:
            deleted.append(slug)
        else:
            items.append((decode(blob), blob))
    more = position.offset + limit < len(changes)
    return SyncPage(
        items=items, deleted=deleted,
        next_sync=None if more else _encode(key, _Position(target=position.target, base=None)),
        next_page=_encode(key, msgspec.structs.replace(position, offset=position.offset + limit))
        if more else None,
        commit=position.target,
    )


def _changes(documents: Documents, position: _Position) -> dict[str, str | None]:
    repo = documents.repo
    target_tree = repo.read_commit(position.target).tree
    if position.base is None:
        found = repo.files(target_tree, documents.layout.folder)
        return dict(_by_slug(documents, found.items()))
    base_tree = repo.read_commit(position.base).tree
    changed = changed_files(repo, base_tree, target_tree, documents.layout.folder)
    return dict(_by_slug(documents, changed.items()))


def _by_slug(documents: Documents, paths: Iterable[tuple[str, str | None]]
             ) -> Iterator[tuple[str, str | None]]:
    for path, blob in paths:
        slug = documents.layout.slug_at(path)
        if slug is not None:
            yield slug, blob


def _check_known(documents: Documents, commit: str) -> None:
    try:
        documents.repo.read_commit(commit)
    except CmsError as exc:
        raise SyncTokenGone("the sync token names a commit this repository does not have; "
                            "sync from the start (GET /api/sync)", field="token") from exc


def _check_ancestor(documents: Documents, base: str, head: str) -> None:
    _check_known(documents, base)
    if base != head and not documents.is_ancestor(base, head):
        raise SyncTokenGone("the sync token is not from this repository's published history; "
                            "sync from the start (GET /api/sync)", field="token")


def _encode(key: bytes, position: _Position) -> str:
    # Signed, so that a client cannot point a sync at a commit that was never published
    # (a draft's commit, say) and read it.
    return sign(key, msgspec.json.encode(position), size=16)


def _decode(key: bytes, value: str, field: str) -> _Position:
    try:
        position = msgspec.json.decode(urlsafe.decode(value.partition(".")[0]), type=_Position)
        unsign(key, value, size=16)
    except ForgedToken:
        raise SyncTokenGone(f"the {field} was not issued by this server; sync from the start "
                            "(GET /api/sync)", field=field) from None
    except (ValueError, msgspec.DecodeError) as exc:
        raise BadRequest(f"the {field} is not one this API gave out; sync from the start",
                         field=field) from exc
    if len(position.target) != 40 or position.offset < 0:
        raise BadRequest(f"the {field} is not one this API gave out", field=field)
    return position
