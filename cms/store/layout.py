"""Where things live in the content repository: files, branches and archive refs.

Published content is on the main branch; work in progress on a branch per comparison
(``refs/heads/cms/comparisons/<slug>``); a discarded draft's last commit stays reachable under
``refs/cms/discarded/comparisons/<slug>/<commit>``. A pending schedule is indexed by a ref to its
commit: ``refs/cms/scheduled/<slug>/draft`` for the publication of the work in progress,
``refs/cms/scheduled/<slug>/live`` for the takedown of what is published.
"""

from __future__ import annotations

import hashlib

from msgspec import Struct

BRANCH_PREFIX = "refs/heads/cms/comparisons/"
DISCARDED_PREFIX = "refs/cms/discarded/comparisons/"
SCHEDULED_PREFIX = "refs/cms/scheduled/"
RELEASES_PREFIX = "refs/cms/releases/"
SCHEDULED_RELEASES_PREFIX = "refs/cms/scheduled-releases/"
# Copies of the catalogue that new replicas start from (see reading/shipped.py).
CATALOGUE_PREFIX = "refs/cms/catalogue/"
# The workflow definitions in force, on main beside the content they govern.
WORKFLOWS_FOLDER = ".cms/workflows"
# Where a schedule acts: on the work in progress (a publication), or on what is live (a takedown).
SCHEDULE_PLACES = ("draft", "live")


def shard(slug: str) -> str:
    """The folder a comparison's file lives in: two hex digits of a hash of its slug.

    256 folders of even size keep every tree small, so a commit rewrites a few small trees rather
    than one listing every comparison. Slugs themselves cluster (many start with the same tool's
    name), so their first letters would not spread them. Find a file by name with
    ``git log -- '*/<slug>.md'``.
    """
    return hashlib.sha1(slug.encode(), usedforsecurity=False).hexdigest()[:2]


class Layout(Struct, frozen=True):
    content_dir: str
    main_branch: str

    @property
    def main_ref(self) -> str:
        return f"refs/heads/{self.main_branch}"

    @property
    def folder(self) -> str:
        return f"{self.content_dir}/comparisons"

    def path(self, slug: str) -> str:
        return f"{self.folder}/{shard(slug)}/{slug}.md"

    def slug_at(self, path: str) -> str | None:
        """The slug whose file lives at ``path``; None where no comparison's file would be."""
        slug = path.rsplit("/", 1)[-1].removesuffix(".md")
        return slug if path == self.path(slug) else None

    @staticmethod
    def branch(slug: str) -> str:
        return BRANCH_PREFIX + slug

    @staticmethod
    def archive(slug: str, commit: str) -> str:
        return f"{DISCARDED_PREFIX}{slug}/{commit}"

    @staticmethod
    def scheduled(slug: str, place: str) -> str:
        return f"{SCHEDULED_PREFIX}{slug}/{place}"

    @staticmethod
    def document(slug: str) -> str:
        """The value of a ``Cms-Document`` trailer."""
        return f"comparisons/{slug}"

    @staticmethod
    def slug_of_document(value: str) -> str | None:
        """The slug a ``Cms-Document`` trailer names, if it names a comparison."""
        slug = value.removeprefix("comparisons/")
        return slug if slug and slug != value else None
