"""The reference site at scale: a first build of every comparison from a live server, and the
rebuild after one comparison is re-published, against the baseline of a rebuild with nothing
new (one sync round trip and nothing written), measured in the same run."""

from __future__ import annotations

from pathlib import Path

import httpx

from cms.config import load_settings
from cms.editing.write_side import open_write_side
from cms.site.build import build
from cms.site.source import Source
from cms.store.repository import Repository

from .common import (
    PUBLISHER,
    cms_server,
    published_slugs,
    seed_repository,
    summary,
    timed,
    until_ready,
)
from .review import approved


def bench_site(workdir: Path, comparisons: int, rounds: int) -> dict[str, object]:
    settings = load_settings({}, repo=workdir / "site.git", data=workdir / "site-data",
                             webhook_worker=False)
    seed_repository(settings, comparisons)
    store = open_write_side(settings, repo=Repository(settings.repo))
    slugs = published_slugs(store.documents)
    out, state = workdir / "site" / "public", workdir / "site" / "public.state"
    report: dict[str, object] = {"comparisons": comparisons}
    with cms_server(settings) as (_, url):
        until_ready(lambda path: httpx.get(f"{url}{path}", timeout=60))
        source = Source(url, timeout=120)
        try:
            report["full_build_s"] = round(timed(lambda: build(source, out, state)), 2)
            report["files"] = sum(1 for path in out.rglob("*") if path.is_file())
            nothing, one, written = [], [], []
            for number in range(rounds):
                nothing.append(timed(lambda: build(source, out, state)))
                slug = slugs[(number * 7919) % len(slugs)]
                store.editor.transition(slug, "publish", PUBLISHER,
                                        approved(store, slug, number))
                result = None

                def rebuild() -> None:
                    nonlocal result
                    result = build(source, out, state)

                one.append(timed(rebuild))
                assert result is not None
                written.append(len(result.written))
        finally:
            source.close()
    baseline, changed = summary(nothing), summary(one)
    report["rebuild_nothing_new"] = baseline
    report["rebuild_one_changed"] = changed
    report["files_written_per_rebuild"] = max(written) if written else 0
    report["ratio"] = round(changed["median_ms"] / baseline["median_ms"], 1)
    return report
