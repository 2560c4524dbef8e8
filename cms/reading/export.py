"""Static export: the published content as files, for frontends built with no server running.

    DIR/index.json                 every published comparison, summarised, sorted by slug
    DIR/sync.json                  the commit exported and its sync token
    DIR/comparisons/<slug>.json    the whole comparison, as GET /api/comparisons/<slug> returns it
    DIR/comparisons/<slug>.html    its rendered body

A file is written only when its bytes change, and files of comparisons no longer published are
removed, so exporting an unchanged main rewrites nothing and a build tool sees true changes.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
from msgspec import Struct

from ..content.render import render_cached
from ..store.documents import Documents
from .card import card_of
from .index import Entry
from .sync import Sync
from .views import ComparisonSummary, comparison_url, comparison_view, summary_view


class ExportIndex(Struct, kw_only=True):
    commit: str | None
    items: list[ComparisonSummary]


class ExportSync(Struct, kw_only=True):
    commit: str | None
    next_sync: str | None


class ExportResult(Struct, kw_only=True):
    written: int
    unchanged: int
    removed: int
    comparisons: int


def export(documents: Documents, sync: Sync, base: str, out: Path) -> ExportResult:
    head = documents.main_head()
    entries: list[Entry] = []
    if head is not None:
        files = documents.repo.files(documents.repo.read_commit(head).tree, documents.layout.folder)
        for path, blob in sorted(files.items()):
            if documents.layout.slug_at(path) is not None:
                entries.append(Entry(comparison=documents.decode_blob(blob), blob=blob))
    entries.sort(key=lambda entry: entry.slug)
    wanted: dict[Path, bytes] = {}
    for entry in entries:
        url = comparison_url(base, entry.slug)
        html = render_cached(entry.blob, entry.comparison.body)
        view = comparison_view(entry.comparison, revision=entry.blob, html=html, url=url)
        wanted[out / "comparisons" / f"{entry.slug}.json"] = _json(view)
        wanted[out / "comparisons" / f"{entry.slug}.html"] = html.encode("utf-8")
    items = [summary_view(card_of(entry.comparison), entry.blob, comparison_url(base, entry.slug))
             for entry in entries]
    wanted[out / "index.json"] = _json(ExportIndex(commit=head, items=items))
    wanted[out / "sync.json"] = _json(ExportSync(
        commit=head, next_sync=sync.token(head) if head else None))
    written = unchanged = 0
    for target, data in wanted.items():
        if _write_if_changed(target, data):
            written += 1
        else:
            unchanged += 1
    removed = 0
    folder = out / "comparisons"
    if folder.is_dir():
        for stale in sorted(folder.iterdir()):
            if stale.is_file() and stale not in wanted:
                stale.unlink()
                removed += 1
    return ExportResult(written=written, unchanged=unchanged, removed=removed,
                        comparisons=len(entries))


def _json(value: object) -> bytes:
    return msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n"


def _write_if_changed(path: Path, data: bytes) -> bool:
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)
    return True
