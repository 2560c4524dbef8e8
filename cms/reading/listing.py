"""Lists and search over the catalogue: filters, sort orders, relevance and cursors, as SQL.

A page costs what it shows, not what the catalogue holds: sorted lists walk an index from the
cursor on, and search walks its matches newest first, part by part (a comparison whose title or
tools hold every word before one whose summary does, before one whose text does), stopping when
the page is full. Ranking by term statistics (BM25) would score every match before showing
any, and a common word matches most of a large catalogue.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Literal

import msgspec
from msgspec import Struct

from .. import urlsafe
from ..errors import BadRequest
from .card import Card
from .catalogue import SEARCH_PARTS

SortKey = Literal["relevance", "published", "-published", "title", "-title", "panel_ship",
                  "-panel_ship"]
SORT_KEYS: tuple[str, ...] = SortKey.__args__  # type: ignore[attr-defined]
_COLUMNS = {"published": "published", "title": "title", "panel_ship": "panel_ship"}
# A word of search, as the index's tokenizer cuts text: letters and digits.
_WORD = re.compile(r"[^\W_]+")
MAX_WORDS = 12
# The last word of a query also matches longer words that begin with it ("lang" finds
# "langgraph"), from this many characters: a shorter beginning names too many words.
PREFIX_FROM = 3


class Query(Struct, frozen=True, kw_only=True):
    q: str | None = None
    tool: str | None = None
    category: str | None = None
    verdict: Literal["ship", "skip", "split"] | None = None
    # None: by relevance when there are words to search for, else newest first.
    sort: SortKey | None = None
    cursor: str | None = None
    limit: int = 20


class Listed(Struct, frozen=True):
    blob: str
    card: Card

    @property
    def slug(self) -> str:
        return self.card.slug


class Page(Struct, frozen=True):
    items: list[Listed]
    next_cursor: str | None
    total: int


def match_expression(q: str | None) -> str | None:
    """The search index's query for what a reader typed: every word must appear. Words are
    quoted, so nothing typed is taken as the index's query syntax."""
    words = list(dict.fromkeys(_WORD.findall(q or "")))[:MAX_WORDS]
    if not words:
        return None
    terms = [f'"{word}"' for word in words]
    assert q is not None
    if len(words[-1]) >= PREFIX_FROM and not q[-1].isspace():
        terms[-1] += "*"
    return " AND ".join(terms)


def page(db: sqlite3.Connection, query: Query) -> Page:
    match = match_expression(query.q)
    sort = query.sort or ("relevance" if match else "-published")
    if sort == "relevance" and match is None:
        sort = "-published"
    where, params = _filters(query)
    try:
        if sort == "relevance":
            assert match is not None
            return _by_relevance(db, query, match, where, params)
        if match is not None:
            where.append("c.id IN (SELECT rowid FROM search_full WHERE search_full MATCH ?)")
            params.append(match)
        return _sorted(db, query, sort, where, params)
    except sqlite3.OperationalError as exc:
        # Only the words can be at fault: the rest of the statement is ours.
        raise BadRequest("the search words cannot be searched for; use letters and digits",
                         field="q") from exc


def _filters(query: Query) -> tuple[list[str], list[object]]:
    """SQL conditions on a comparison `c`, as the list's filters ask: a tool by id or part of
    its name, either tool's category, and the panel's verdict on the tool that matched."""
    where: list[str] = []
    params: list[object] = []
    on_tool: list[str] = []
    if query.tool:
        needle = query.tool.casefold()
        on_tool.append("(t.id = ? OR instr(t.name, ?) > 0)")
        params += [needle, needle]
    if query.verdict:
        on_tool.append("t.verdict = ?")
        params.append(query.verdict)
    if on_tool:
        where.append("EXISTS (SELECT 1 FROM tools t WHERE t.comparison = c.id AND "
                     + " AND ".join(on_tool) + ")")
    if query.category:
        where.append("EXISTS (SELECT 1 FROM tools t WHERE t.comparison = c.id "
                     "AND t.category = ?)")
        params.append(query.category.casefold())
    return where, params


def _sorted(db: sqlite3.Connection, query: Query, sort: str, where: list[str],
            params: list[object]) -> Page:
    column = _COLUMNS[sort.lstrip("-")]
    descending = sort.startswith("-")
    total = _count(db, "FROM comparisons c", where, params)
    conditions, arguments = list(where), list(params)
    if query.cursor:
        key, slug = _decode_cursor(query.cursor, sort)
        conditions.append(f"(c.{column}, c.slug) {'<' if descending else '>'} (?, ?)")
        arguments += [key, slug]
    order = "DESC" if descending else "ASC"
    rows = db.execute(
        f"SELECT c.blob, c.card, c.{column} FROM comparisons c{_where(conditions)} "
        f"ORDER BY c.{column} {order}, c.slug {order} LIMIT ?",
        [*arguments, query.limit + 1]).fetchall()
    items = [_listed(blob, card) for blob, card, _key in rows[: query.limit]]
    cursor = None
    if len(rows) > query.limit:
        _blob, _card, key = rows[query.limit - 1]
        cursor = _encode_cursor([sort, key, items[-1].slug])
    return Page(items=items, next_cursor=cursor, total=total)


def _by_relevance(db: sqlite3.Connection, query: Query, match: str, where: list[str],
                  params: list[object]) -> Page:
    total = _count(db, "FROM search_full s JOIN comparisons c ON c.id = s.rowid",
                   ["search_full MATCH ?", *where], [match, *params])
    start_part, below = 0, None
    if query.cursor:
        start_part, below = _decode_relevance_cursor(query.cursor)
    found: list[tuple[int, int, str, bytes]] = []  # part, id, blob, card
    wanted = query.limit + 1
    for part in range(start_part, len(SEARCH_PARTS)):
        name = SEARCH_PARTS[part]
        conditions = [f"search_{name} MATCH ?", *where]
        arguments: list[object] = [match, *params]
        if part > 0:  # found by an earlier part already
            earlier = SEARCH_PARTS[part - 1]
            conditions.append(f"NOT EXISTS (SELECT 1 FROM search_{earlier} e WHERE "
                              f"search_{earlier} MATCH ? AND e.rowid = c.id)")
            arguments.append(match)
        if part == start_part and below is not None:
            conditions.append("s.rowid < ?")
            arguments.append(below)
        rows = db.execute(
            f"SELECT s.rowid, c.blob, c.card FROM search_{name} s JOIN comparisons c "
            f"ON c.id = s.rowid{_where(conditions)} ORDER BY s.rowid DESC LIMIT ?",
            [*arguments, wanted - len(found)]).fetchall()
        found += [(part, number, blob, card) for number, blob, card in rows]
        if len(found) >= wanted:
            break
    items = [_listed(blob, card) for _part, _number, blob, card in found[: query.limit]]
    cursor = None
    if len(found) > query.limit:
        part, number, _blob, _card = found[query.limit - 1]
        cursor = _encode_cursor(["relevance", part, number])
    return Page(items=items, next_cursor=cursor, total=total)


def _count(db: sqlite3.Connection, source: str, where: list[str], params: list[object]) -> int:
    return int(db.execute(f"SELECT count(*) {source}{_where(where)}", params).fetchone()[0])


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _listed(blob: str, card: bytes) -> Listed:
    return Listed(blob=blob, card=msgspec.msgpack.decode(card, type=Card))


def _encode_cursor(value: list[object]) -> str:
    return urlsafe.encode(msgspec.json.encode(value))


def _decode_cursor(cursor: str, sort: str) -> tuple[str | float, str]:
    try:
        raw = urlsafe.decode(cursor)
        cursor_sort, key, slug = msgspec.json.decode(raw, type=tuple[str, str | float, str])
    except (ValueError, msgspec.DecodeError) as exc:
        raise BadRequest("the cursor is not one this API gave out", field="cursor") from exc
    if cursor_sort != sort:
        raise BadRequest("the cursor belongs to a different sort order", field="cursor")
    numeric = sort.lstrip("-") == "panel_ship"
    if isinstance(key, float | int) != numeric:
        raise BadRequest("the cursor is not one this API gave out", field="cursor")
    return key, slug


def _decode_relevance_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = urlsafe.decode(cursor)
        sort, part, number = msgspec.json.decode(raw, type=tuple[str, int, int])
    except (ValueError, msgspec.DecodeError) as exc:
        raise BadRequest("the cursor is not one this API gave out", field="cursor") from exc
    if sort != "relevance":
        raise BadRequest("the cursor belongs to a different sort order", field="cursor")
    if not 0 <= part < len(SEARCH_PARTS) or not 0 <= number < 2**63:
        raise BadRequest("the cursor is not one this API gave out", field="cursor")
    return part, number
