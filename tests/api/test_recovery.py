"""A server restarted at once beside another live one: what its crash left half-done in the refs
is recovered as it starts, so no comparison stays blocked until a periodic pass comes round."""

from __future__ import annotations

from pathlib import Path

import msgspec

from cms.api.services import build_services
from cms.config import Settings
from cms.editing.write_side import open_write_side
from cms.store.recovery import Instances

from ..conftest import HAIKU, fsck
from ..helpers import EDITOR, PUBLISHER, approved_draft


def test_a_restart_beside_a_live_server_recovers_a_fresh_half_done_publish(
        settings: Settings, repo_path: Path) -> None:
    live = Instances(repo_path)  # another server, running all along
    live.join()
    try:
        store = open_write_side(settings)
        approved = approved_draft(store, HAIKU)
        store.editor.transition(HAIKU, "publish", PUBLISHER, approved.revision)
        # Killed between the two moves, a moment ago: main merged, the branch not yet dropped.
        branch = store.layout.branch(HAIKU)
        store.repo.refs.update(branch, approved.commit, None)

        restarted = build_services(settings)
        assert restarted.documents.repo.refs.read(branch) is None
        current = restarted.documents.current(HAIKU)
        assert current is not None
        assert current.state == "published"
        edited = msgspec.structs.replace(current.comparison, summary="Edited after the restart.")
        saved = restarted.editor.save(HAIKU, edited, EDITOR, current.revision)
        assert saved.state == "draft"
        restarted.instances.close()
    finally:
        live.close()
    fsck(repo_path)
