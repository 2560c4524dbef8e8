"""Who is acting: a person with roles, and a person as git records them (author, approver)."""

from __future__ import annotations

from typing import Final, Literal

from msgspec import Struct

Role = Literal["editor", "reviewer", "chief", "publisher", "admin", "auditor"]
ROLES: Final[tuple[Role, ...]] = ("editor", "reviewer", "chief", "publisher", "admin",
                                  "auditor")


class Person(Struct, frozen=True):
    """Someone as git knows them: the author of a commit, an approver."""

    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class Actor(Struct, frozen=True):
    name: str
    email: str
    roles: frozenset[str]

    @property
    def as_person(self) -> Person:
        return Person(name=self.name, email=self.email)

    @property
    def person(self) -> str:
        """The git identity form, ``Name <email>``, as used in trailers and front matter."""
        return f"{self.name} <{self.email}>"

    def has_any(self, roles: frozenset[str] | set[str]) -> bool:
        return not self.roles.isdisjoint(roles)
