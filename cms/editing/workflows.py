"""The workflows in force: several definitions by name, one of them the default.

A comparison names its workflow when it is created and keeps it (``workflow.name`` in its file;
a file without one follows the workflow named ``default``). Definitions are read from a folder
of TOML files, each named after its workflow (``two-step.toml`` holds ``name = "two-step"``), and
every one is checked before any is used.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..content.model import WorkflowRecord
from ..errors import InvalidContent
from .workflow import Workflow, parse_workflow, permitted_roles

DEFAULT = "default"


class Workflows:
    def __init__(self, workflows: Iterable[Workflow], default: str = DEFAULT, *,
                 sources: dict[str, bytes] | None = None) -> None:
        self._by_name = {workflow.name: workflow for workflow in workflows}
        if default not in self._by_name:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise InvalidContent(f"the default workflow `{default}` is not defined; defined: "
                                 f"{known}", field="workflow")
        self._default = self._by_name[default]
        # Each definition's file as it was read, by workflow name.
        self._sources = dict(sources or {})

    @classmethod
    def parse(cls, files: dict[str, bytes], default: str = DEFAULT,
              where: str = "") -> Workflows:
        """Definitions from their files' text (file name -> TOML), every one checked, with one
        message listing each bad file."""
        loaded: list[Workflow] = []
        problems: list[str] = []
        for name, text in sorted(files.items()):
            source = f"{where}/{name}" if where else name
            try:
                workflow = parse_workflow(text, source)
            except InvalidContent as exc:
                problems.append(exc.message)
                continue
            stem = name.removesuffix(".toml")
            if workflow.name != stem:
                problems.append(f"workflow {source}: name: `{workflow.name}` differs from the "
                                f"file's name; call it `{stem}` or rename the file")
                continue
            loaded.append(workflow)
        if problems:
            raise InvalidContent("; ".join(problems), field="workflow")
        return cls(loaded, default, sources={name.removesuffix(".toml"): text
                                             for name, text in files.items()})

    def in_force(self) -> Workflows:
        """The set that decides now: this one, unless it follows definitions that change."""
        return self

    def in_force_at(self, commit: str | None) -> Workflows:
        """The set that decided a commit made on top of ``commit``."""
        return self

    @property
    def by_name(self) -> dict[str, Workflow]:
        return self.in_force()._by_name

    @property
    def default(self) -> Workflow:
        return self.in_force()._default

    @property
    def sources(self) -> dict[str, bytes]:
        return self.in_force()._sources

    def named(self, name: str | None) -> Workflow:
        """The workflow called ``name`` (the default for None), or a 422 naming those there are."""
        if name is None:
            return self.default
        found = self.by_name.get(name)
        if found is None:
            known = ", ".join(sorted(self.by_name))
            raise InvalidContent(f"no workflow named `{name}`; the workflows are: {known}",
                                 field="workflow")
        return found

    def of(self, record: WorkflowRecord | None) -> Workflow:
        """The workflow a comparison follows: the one its record names, else ``default``."""
        if record is None or record.name is None:
            return self.by_name.get(DEFAULT, self.default)
        return self.named(record.name)

    def transitions(self) -> list[str]:
        """Every transition of any workflow, in the order the definitions give them."""
        return list(dict.fromkeys(name for workflow in self.by_name.values()
                                  for name in workflow.transitions))

    def permitted_roles(self, action: str) -> set[str]:
        """The roles some workflow allows ``action`` to: a first, coarse check of a request;
        the comparison's own workflow decides."""
        return set().union(*(permitted_roles(workflow, action)
                             for workflow in self.by_name.values()))


def load_workflows(files: Iterable[Path], default: str = DEFAULT) -> Workflows:
    """Every definition checked, with one message listing each bad file."""
    texts: dict[str, bytes] = {}
    for path in files:
        try:
            texts[path.name] = path.read_bytes()
        except OSError as exc:
            raise InvalidContent(f"workflow {path.name}: {exc.strerror}",
                                 field="workflow") from exc
    return Workflows.parse(texts, default)


def definitions(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.toml"))
