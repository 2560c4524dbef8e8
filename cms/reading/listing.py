"""Lists and search over the catalogue: filters, sort orders, relevance and cursors, as SQL.

A page costs what it shows, not what the catalogue holds: sorted lists walk an index from the
cursor on, and search walks its matches newest first, part by part (a comparison whose title or
tools hold every word before one whose summary does, before one whose text does), stopping when
the page is full. Ranking by term statistics (BM25) would score every match before showing
any, and a common word matches most of a large catalogue.
"""

from __future__ import annotations

import bisect
import re
import sqlite3
from collections.abc import Generator, Iterator
from contextlib import closing
from typing import Any, Literal, cast

import msgspec
from msgspec import Struct

from .. import urlsafe
from ..errors import BadRequest
from .card import Card
from .search_bits import ROWS_KEPT, Rows, SearchBits, combined, newest, newest_of_two, stamp_of
from .search_bits import State as _BitsState

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
    total_exact: bool = True  # False: a search matched more than `total`


class Words(Struct, frozen=True):
    """The search index's queries for what a reader typed: every word must appear. Words are
    quoted, so nothing typed is taken as the index's query syntax."""

    exact: str  # every word whole
    begun: str  # the same, with the last word also as a beginning where that applies


def typed_words(q: str | None) -> tuple[list[str], bool] | None:
    """The words searched for, as typed, and whether the last is also a beginning."""
    typed = _WORD.findall(q or "")
    if not typed:
        return None
    # The word typed last stays last, whatever came before it: it is the one being typed.
    last = typed[-1]
    if len(typed) > 2 or (len(typed) == 2 and typed[0] == last):  # (most are one or two)
        before = [word for word in dict.fromkeys(typed) if word != last]
        typed = [*before[: MAX_WORDS - 1], last]
    assert q is not None
    return typed, len(last) >= PREFIX_FROM and not q[-1].isspace()


def match_words(q: str | None) -> Words | None:
    found = typed_words(q)
    if found is None:
        return None
    words, begun = found
    exact = " AND ".join(f'"{word}"' for word in words)
    return Words(exact=exact, begun=f"{exact}*" if begun else exact)


def page(db: sqlite3.Connection, query: Query, bits: SearchBits | None = None, *,
         only_bits: bool = False) -> Page | None:
    """A page of the list; from the common words' bitmaps when they can answer it (None, with
    ``only_bits``, when they cannot)."""
    if bits is not None and query.q and not (query.tool or query.category or query.verdict) \
            and query.sort in (None, "relevance"):
        found = _from_bits(db, bits, bits.state(), query)
        if found is not None or only_bits:
            return found
    elif only_bits:
        return None
    words = match_words(query.q)
    sort = query.sort or ("relevance" if words else "-published")
    if sort == "relevance" and words is None:
        sort = "-published"
    where, params = _filters(query)
    try:
        if words is None:
            return _sorted(db, query, sort, where, params, _count(db, where, params), True)
        total, exact = _count_matches(db, words, where, params)
        if total == 0:  # most mistyped queries: nothing to walk, but a cursor is still checked
            if query.cursor and sort == "relevance":
                _decode_relevance_cursor(query.cursor)
            elif query.cursor:
                _decode_cursor(query.cursor, sort)
            return Page(items=[], next_cursor=None, total=0)
        if sort == "relevance":
            return _by_relevance(db, query, words, where, params, total, exact)
        where.append(f"c.id IN ({_MATCHES})")
        params += [words.begun, words.exact]
        return _sorted(db, query, sort, where, params, total, exact)
    except sqlite3.OperationalError as exc:
        if "fts5" not in str(exc):  # the file, not the words: for the index to deal with
            raise
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
            params: list[object], total: int, exact: bool) -> Page:
    column = _COLUMNS[sort.lstrip("-")]
    descending = sort.startswith("-")
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
    return Page(items=items, next_cursor=cursor, total=total, total_exact=exact)


# Every comparison the words match: the beginning of the last word in the title, tools, summary
# and taglines, whole words anywhere.
_MATCHES = ("SELECT rowid FROM search_lead WHERE search_lead MATCH ? "
            "UNION SELECT rowid FROM search_full WHERE search_full MATCH ?")
# Matches are counted up to this many: past it a count costs what the whole match list does,
# and no reader pages that far.
COUNTED = 1000
# The newest rows read for search once the bitmaps are there (see ``keep_newest``).
NEWEST_KEPT = 1024
# The parts walked in order; each shows what the one before it did not.
_PARTS = (("head", "begun"), ("lead", "begun"), ("full", "exact"))
# By part, whether the last word typed is also matched as a beginning (when it is one).
_BEGUN = tuple(kind == "begun" for _part, kind in _PARTS)
_WHOLE = tuple(False for _part in _PARTS)


def _count(db: sqlite3.Connection, where: list[str], params: list[object]) -> int:
    return int(db.execute(f"SELECT count(*) FROM comparisons c{_where(where)}",
                          params).fetchone()[0])


def _count_matches(db: sqlite3.Connection, words: Words, where: list[str],
                   params: list[object]) -> tuple[int, bool]:
    """How many comparisons match, up to ``COUNTED``, and whether that is all of them. Both
    lists come newest first, so SQLite merges them and stops at the limit."""
    sides = []
    arguments: list[object] = []
    # Every row of the index has its comparison's row: they are joined only to filter.
    joined = " JOIN comparisons c ON c.id = s.rowid" if where else ""
    for part, expression in (("lead", words.begun), ("full", words.exact)):
        sides.append(f"SELECT s.rowid FROM search_{part} s{joined}"
                     f"{_where([f'search_{part} MATCH ?', *where])}")
        arguments += [expression, *params]
    found = int(db.execute(
        f"SELECT count(*) FROM ({' UNION '.join(sides)} ORDER BY 1 DESC LIMIT ?)",
        [*arguments, COUNTED + 1]).fetchone()[0])
    return min(found, COUNTED), found <= COUNTED


def _by_relevance(db: sqlite3.Connection, query: Query, words: Words, where: list[str],
                  params: list[object], total: int, exact: bool) -> Page:
    start, below = 0, None
    if query.cursor:
        start, below = _decode_relevance_cursor(query.cursor)
    found: list[tuple[int, int, str, bytes]] = []  # part, id, blob, card
    wanted = query.limit + 1
    # From the top, each part is walked whole before the next one (or the page is full): its
    # matches are then known, and what the next part shows again is left out by them rather
    # than by walking the part before once more. Past a cursor, it is walked.
    seen: set[int] | None = set() if query.cursor is None else None
    for number in range(start, len(_PARTS)):
        part, kind = _PARTS[number]
        limit = below if number == start else None
        candidates = _walk(db, part, getattr(words, kind), where, params, limit, cards=True)
        shown = _nothing()
        if number > 0 and seen is None:  # what the part before showed: its words, no filters
            earlier, earlier_kind = _PARTS[number - 1]
            shown = _walk(db, earlier, getattr(words, earlier_kind), [], [], limit, cards=False)
        with closing(candidates), closing(shown):
            for row in _unshown(candidates, shown):
                if seen is not None:
                    if row[0] in seen:
                        continue
                    seen.add(row[0])
                found.append((number, *row))
                if len(found) == wanted:
                    break
        if len(found) == wanted:
            break
    items = [_listed(blob, card) for _part, _number, blob, card in found[: query.limit]]
    cursor = None
    if len(found) > query.limit:
        part_number, row_id, _blob, _card = found[query.limit - 1]
        cursor = _encode_cursor(["relevance", part_number, row_id])
    return Page(items=items, next_cursor=cursor, total=total, total_exact=exact)


def _from_bits(db: sqlite3.Connection | None, bits: SearchBits, state: _BitsState | None,
               query: Query) -> Page | None:
    """``_count_matches`` and ``_by_relevance`` for a search with no filters, from bitmaps: the
    same rows in the same order, or None when a word is not in them. Without ``db``, only
    when every row shown was read before for the same transaction: the caller knows the
    bitmaps are of the catalogue's last one."""
    if state is None or not query.q:
        return None
    # Lower-cased once the words are cut and their repeats dropped, as SQL sees them: "Zephyr
    # zephyr" is two words there (the last a beginning, the first whole), and lower-cased
    # whole first it would be one.
    typed = typed_words(query.q)
    if typed is None:
        return None
    words, begun = typed
    words = [word.lower() for word in words]
    # Read first, so that rows read for rare words are of the bitmaps' transaction.
    if db is not None and stamp_of(db) != state.stamp:
        return None  # the bitmaps are of other rows than this transaction reads
    terms = bits.terms(state, words, _BEGUN if begun else _WHOLE, db)
    if terms is None:
        return None
    start, below = 0, None
    if query.cursor:
        start, below = _decode_relevance_cursor(query.cursor)
    wanted = query.limit + 1
    walked = None
    if len(terms) == 2 and not query.cursor:
        walked = _two_words(state, terms, wanted)
    if walked is None:
        walked = _walked(state, terms, start, below, wanted, since_cursor=bool(query.cursor))
    found, ends, total, exact = walked
    if total == 0:
        return Page(items=[], next_cursor=None, total=0)
    shown = found[: query.limit]
    kept = cast(dict[int, Listed], state.rows)
    # Other threads add rows and empty the dict meanwhile: each row is looked up once.
    rows_kept = list(map(kept.get, shown))
    # A row is never false: ``all`` finds the None without comparing every row with it.
    if not all(rows_kept):
        if db is None:
            return None
        missing = [number for number, row in zip(shown, rows_kept, strict=True) if row is None]
        read = {int(number): _listed(blob, card) for number, blob, card in db.execute(
            f"SELECT id, blob, card FROM comparisons WHERE id IN ({','.join('?' * len(missing))})",
            missing)}
        if len(read) != len(missing):
            return None
        if len(kept) + len(read) > ROWS_KEPT:
            _make_room(kept, state)
        kept.update(read)
        rows_kept = [read[number] if row is None else row
                     for number, row in zip(shown, rows_kept, strict=True)]
    items = cast(list[Listed], rows_kept)
    cursor = None
    if len(found) > query.limit:
        for part_number, end in ends:  # the part of the page's last row
            if end >= query.limit:
                cursor = _encode_cursor(["relevance", part_number, found[query.limit - 1]])
                break
    return Page(items=items, next_cursor=cursor, total=total, total_exact=exact)


def _make_room(kept: dict[int, Listed], state: _BitsState) -> None:
    """Let go of the rows kept but the newest ``NEWEST_KEPT``, which most first pages show
    (see ``keep_newest``): kept across publications, the rows fill up, and emptied whole
    every search would go to a thread for them again."""
    if not state.ids:
        kept.clear()
        return
    newest_row = state.ids[max(len(state.ids) - NEWEST_KEPT, 0)]
    # The keys copied in C first: other threads add rows meanwhile.
    for row in list(kept):
        if row < newest_row:
            kept.pop(row, None)


# The rows of a page by their ids in order, the parts they come from (each part's number and
# the length of the ids after it), how many match (up to ``COUNTED``) and whether that is all.
_Walked = tuple[list[int], list[tuple[int, int]], int, bool]


def _two_words(state: _BitsState, terms: list[tuple[Rows, ...]], wanted: int) -> _Walked | None:
    """``_walked`` from the top for two words, when they match more than ``COUNTED`` and one
    part holds the whole page (most searches of two words that match anything, in a large
    catalogue): counted and read from the end of the bitmaps, without making what the words
    share in any part. None when the walk is needed."""
    first, second = terms
    # Counted rather than made (see ``combined``): most match nothing, and then that is all.
    lead = first[1].intersection_cardinality(second[1]) if first[1] and second[1] else 0
    full = first[2].intersection_cardinality(second[2]) if first[2] and second[2] else 0
    if not lead and not full:
        return [], [], 0, True
    # A row that went may still be counted where a bitmap kept its bit (see ``combined``):
    # the counts are taken to hold at most that many rows that are not there.
    gone = len(state.ids) - len(state.alive)
    if lead <= COUNTED + gone and full <= COUNTED + gone:  # the exact count is the walk's
        return None
    part, held = (2, full) if not lead else (1, lead)
    if first[0] and second[0]:
        head = first[0].intersection_cardinality(second[0])
        if head:
            part, held = 0, head
    if held < wanted:  # the next part's rows would follow on the page
        return None
    positions = newest_of_two(first[part], second[part], held, wanted,
                              state.alive if gone else None)
    if positions is None:
        return None
    return list(map(state.ids.__getitem__, positions)), [(part, wanted)], COUNTED, False


def _walked(state: _BitsState, terms: list[tuple[Rows, ...]], start: int, below: int | None,
            wanted: int, *, since_cursor: bool) -> _Walked:
    """The page's rows from part ``start`` on (below row ``below`` in it, past a cursor), each
    part's matches made and walked newest first, and the count of the summary's and the
    text's matches together."""
    # The count first: most searches of words typed at random match nothing, and then the
    # title's rows are not needed.
    lead, full = combined(state, terms, 1), combined(state, terms, 2)
    counted = lead.union_cardinality(full)
    exact = counted <= COUNTED
    total = counted if exact else COUNTED
    if total == 0:
        return [], [], 0, True
    matched = (combined(state, terms, 0), lead, full)
    found: list[int] = []  # ids, in the page's order
    ends: list[tuple[int, int]] = []
    ids = state.ids
    for number in range(start, len(_PARTS)):
        # Past a cursor, a part leaves out what the part before it matched; from the top, what
        # every part before it did (they were shown whole).
        rows = matched[number]
        if not rows:
            continue
        for other in (matched[number - 1 : number] if since_cursor else matched[:number]):
            if other and rows.intersection_cardinality(other):
                rows = rows - other
        limit = len(ids)
        if number == start and below is not None:
            limit = bisect.bisect_left(ids, below)
        found += map(ids.__getitem__, newest(rows, limit, wanted - len(found)))
        ends.append((number, len(found)))
        if len(found) == wanted:
            break
    return found, ends, total, exact


def keep_newest(db: sqlite3.Connection, state: _BitsState, most: int) -> None:
    """Read the newest ``most`` rows into those kept with the bitmaps (``db`` reads the
    catalogue at their transaction)."""
    if most <= 0 or not state.ids:
        return
    first = state.ids[max(len(state.ids) - most, 0)]
    read = {int(number): _listed(blob, card) for number, blob, card in db.execute(
        "SELECT id, blob, card FROM comparisons WHERE id >= ?", (first,))}
    kept = cast(dict[int, Listed], state.rows)
    if len(kept) + len(read) <= ROWS_KEPT:
        kept.update(read)


def kept_page(bits: SearchBits, query: Query, committed: str) -> Page | None:
    """A search the bitmaps answer with rows read before, without the catalogue; None when it
    needs the catalogue, or when the bitmaps are not of ``committed``, the stamp of the
    catalogue's last transaction."""
    state = bits.state()
    if state is None or state.stamp != committed or not query.q or query.tool or \
            query.category or query.verdict or query.sort not in (None, "relevance"):
        return None
    return _from_bits(None, bits, state, query)


def _walk(db: sqlite3.Connection, part: str, expression: str, where: list[str],
          params: list[object], below: int | None, *, cards: bool
          ) -> Generator[tuple[Any, ...], None, None]:
    """A part's matches newest first, as (id,) or (id, blob, card), read a few at a time."""
    conditions = [f"search_{part} MATCH ?", *where]
    arguments = [expression, *params]
    if below is not None:
        conditions.append("s.rowid < ?")
        arguments.append(below)
    columns = "s.rowid, c.blob, c.card" if cards else "s.rowid"
    joined = " JOIN comparisons c ON c.id = s.rowid" if cards or where else ""
    rows = db.execute(f"SELECT {columns} FROM search_{part} s{joined}{_where(conditions)} "
                      "ORDER BY s.rowid DESC", arguments)
    try:
        while chunk := rows.fetchmany(32):
            yield from chunk
    finally:
        rows.close()


def _nothing() -> Generator[tuple[Any, ...], None, None]:
    yield from ()


def _unshown(candidates: Iterator[tuple[Any, ...]], shown: Iterator[tuple[Any, ...]]
             ) -> Iterator[tuple[Any, ...]]:
    """The candidates that are not among ``shown``: both newest first, so one pass of each."""
    seen = next(shown, None)
    for row in candidates:
        while seen is not None and seen[0] > row[0]:
            seen = next(shown, None)
        if seen is None or seen[0] != row[0]:
            yield row


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _listed(blob: str, card: bytes) -> Listed:
    try:
        return Listed(blob=blob, card=msgspec.msgpack.decode(card, type=Card))
    except (ValueError, TypeError) as exc:  # msgspec's errors are ValueErrors
        raise sqlite3.DatabaseError(f"the card of {blob} is damaged") from exc


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
    if not 0 <= part < len(_PARTS) or not 0 <= number < 2**63:
        raise BadRequest("the cursor is not one this API gave out", field="cursor")
    return part, number
