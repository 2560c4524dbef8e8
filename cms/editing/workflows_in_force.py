"""The workflow definitions in force, versioned in the content repository.

They live on main under ``.cms/workflows/`` (one TOML file per workflow), put there when the
repository is made and changed only by an admin (``cms workflows push``, ``PUT /api/workflows/
{name}``), each change a commit (``Cms-Action: workflows``) that is checked before it is made.
What is in force for a write is what main holds when it is made; what was in force for a commit of
main is what its first parent held, which is what verify checks it against. A repository made
before definitions were kept in it follows the configured ones until the first push.
"""

from __future__ import annotations

import logging
import threading

from ..errors import Conflict, InvalidContent
from ..identity.actors import Actor
from ..store.documents import Documents
from ..store.layout import WORKFLOWS_FOLDER
from ..store.messages import subject_line
from ..store.repository import Repository
from .events import DEFINITIONS
from .pipeline import Change, CommitPipeline, RefMove
from .workflows import DEFAULT, Workflows

log = logging.getLogger("cms")

FOLDER = WORKFLOWS_FOLDER


def files_of(workflows: Workflows) -> dict[str, bytes]:
    """The files that hold ``workflows`` as they were read: path -> content."""
    return {f"{FOLDER}/{name}.toml": source for name, source in workflows.sources.items()}


class WorkflowsInForce(Workflows):
    def __init__(self, documents: Documents, configured: Workflows) -> None:
        super().__init__(configured.by_name.values(), configured.default.name,
                         sources=configured.sources)
        self.documents = documents
        self.configured = configured
        self._lock = threading.Lock()
        self._read: dict[str, Workflows] = {}  # by the folder's tree id
        self._head: tuple[str | None, Workflows] | None = None

    def in_force(self) -> Workflows:
        return self.in_force_at(self.documents.main_head())

    def in_force_at(self, commit: str | None) -> Workflows:
        """The definitions main held at ``commit`` (None: before its first commit)."""
        head = self._head
        if head is not None and head[0] == commit:
            return head[1]
        repo = self.documents.repo
        folder = repo.subtree(repo.read_commit(commit).tree, FOLDER) if commit else None
        if folder is None:
            found: Workflows = self.configured
        else:
            with self._lock:
                if folder not in self._read:
                    self._read[folder] = self._load(folder)
                found = self._read[folder]
        self._head = (commit, found)
        return found

    def check(self) -> None:
        """What a starting server does: refuse definitions on main that do not hold."""
        head = self.documents.main_head()
        repo = self.documents.repo
        folder = repo.subtree(repo.read_commit(head).tree, FOLDER) if head else None
        if folder is not None:
            self._load(folder)

    def push(self, sources: dict[str, bytes], actor: Actor, pipeline: CommitPipeline,
             comment: str = "") -> str | None:
        """Put these definitions (file name -> TOML) in force beside the others, after checking
        the whole set; the commit, or None when they are in force already."""
        for name in sources:
            if not name.endswith(".toml") or "/" in name:
                raise InvalidContent(f"`{name}`: a definition is a file named <workflow>.toml",
                                     field="workflow")
        repo, layout = self.documents.repo, self.documents.layout

        def plan() -> Change | None:
            head = self.documents.main_head()
            if head is None:
                raise Conflict("the content repository has no main branch yet", field="workflow")
            current = self.in_force_at(head)
            merged = {**{f"{name}.toml": text for name, text in current.sources.items()},
                      **sources}
            # Raises, naming file, key and reason.
            proposed = Workflows.parse(merged, current.default.name)
            self._keeps_every_state_in_use(current, proposed)
            tree = repo.read_commit(head).tree
            files: dict[str, bytes | None] = {
                f"{FOLDER}/{name}": text for name, text in merged.items()}
            if repo.subtree(tree, FOLDER) is not None and all(
                    _content(repo, tree, path) == text for path, text in files.items()):
                return None  # in force already: the same push again writes nothing
            names = ", ".join(sorted(name.removesuffix(".toml") for name in sources))
            return Change(
                action=DEFINITIONS, subject=subject_line("Workflows", names), comment=comment,
                slugs=(), state="published", author=actor.as_person, parents=(head,),
                base_tree=tree, files=files,
                moves=(RefMove(ref=layout.main_ref, expected=head),))

        event = pipeline.run(plan)
        return None if event is None else event.commit

    def _keeps_every_state_in_use(self, current: Workflows, proposed: Workflows) -> None:
        """A comparison in a state the new definition lacks could take no step: refuse it,
        naming one."""
        for name, before in current.by_name.items():
            after = proposed.by_name[name]
            # Published content is in one of the public states.
            gone = sorted(state for state, spec in before.states.items()
                          if spec.public and state not in after.states)
            if gone:
                raise Conflict(f"workflow `{name}`: published comparisons are `{gone[0]}`, "
                               "which the new definition lacks", field="workflow")
        for draft in self.documents.drafts():
            workflow = current.of(draft.comparison.workflow)
            if draft.state not in proposed.by_name[workflow.name].states and \
                    draft.state in workflow.states:
                raise Conflict(f"workflow `{workflow.name}`: `{draft.comparison.slug}` is "
                               f"`{draft.state}`, which the new definition lacks",
                               field="workflow")

    def _load(self, folder: str) -> Workflows:
        repo = self.documents.repo
        texts = {name.decode(): repo.read_blob(entry[1].hex())
                 for name, entry in repo.read_tree(folder).items()
                 if name.endswith(b".toml")}
        default = self.configured.default.name if \
            f"{self.configured.default.name}.toml" in texts else DEFAULT
        return Workflows.parse(texts, default, where=f"{FOLDER} on main")


def _content(repo: Repository, tree: str, path: str) -> bytes | None:
    blob = repo.blob_at(tree, path)
    return None if blob is None else repo.read_blob(blob)
