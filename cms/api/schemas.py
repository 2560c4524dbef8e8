"""Request and response bodies.

A read document carries the stored fields plus read-only ones (derived panel shares, rendered
HTML, revision, state). The write bodies accept those read-only fields and ignore them, so a
document read from the API can be sent back unchanged; any other unknown field is an error, so a
misspelt optional field is reported instead of silently dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from msgspec import UNSET, Meta, Struct

from ..content.model import Comparison, Tool, WorkflowRecord, canonical_body
from ..identity.actors import Role
from ..identity.tokens import Email, Name

Ignored = Any  # accepted on write so that reads round-trip, and otherwise ignored
# Goes into a commit message: prose, without control characters (git stops reading at a NUL).
Comment = Annotated[str, Meta(max_length=5000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*\Z")]


class ToolIn(Tool, forbid_unknown_fields=True, kw_only=True):
    """A tool as an editor writes it: the model's fields, and the derived ones a read shows,
    accepted and ignored."""

    panel_ship: Ignored = UNSET
    panel_ship_label: Ignored = UNSET
    panel_verdict: Ignored = UNSET
    community_share: Ignored = UNSET
    community_label: Ignored = UNSET

    def stored(self) -> Tool:
        return Tool(**{name: getattr(self, name) for name in Tool.__struct_fields__})


class ComparisonIn(Comparison, forbid_unknown_fields=True, kw_only=True):
    """A comparison as an editor writes it: the model's fields (validated by the model's own
    rules as the body is decoded), a comment for the commit, and the read-only fields of a read,
    ``workflow`` among them, accepted and ignored."""

    # Narrows the model's list of tools to tools as written (with their read-only fields).
    tools: Annotated[list[ToolIn], Meta(min_length=2, max_length=2)]  # type: ignore[assignment]
    workflow: Ignored = UNSET
    comment: Comment = ""
    html: Ignored = UNSET
    revision: Ignored = UNSET
    state: Ignored = UNSET
    url: Ignored = UNSET
    allowed_actions: Ignored = UNSET

    def __post_init__(self) -> None:
        # Browsers send CRLF line endings; the model stores canonical prose, then checks it.
        self.body = canonical_body(self.body)
        super().__post_init__()

    def to_comparison(self) -> Comparison:
        fields = {name: getattr(self, name) for name in Comparison.__struct_fields__}
        fields.update(tools=[tool.stored() for tool in self.tools], workflow=WorkflowRecord())
        return Comparison(**fields)


class RevertIn(Struct, forbid_unknown_fields=True):
    to: Annotated[str, Meta(pattern=r"^[0-9a-f]{4,40}\Z",
                            description="The commit to go back to, full or abbreviated")]
    comment: Comment = ""


class PreviewIn(Struct, forbid_unknown_fields=True):
    expires_in: Annotated[int, Meta(ge=60, le=30 * 24 * 3600)] = 7 * 24 * 3600


class PreviewLink(Struct, kw_only=True):
    id: str
    url: str
    expires_at: datetime


class TransitionIn(Struct, forbid_unknown_fields=True):
    action: Annotated[str, Meta(min_length=1, max_length=40)]
    comment: Comment = ""
    at: Annotated[datetime, Meta(tz=True, description=(
        "Take the action then (RFC 3339, with its offset) instead of now: only a publication "
        "or a takedown can be scheduled; the answer is 202 and the schedule"))] | None = None


class DraftSummary(Struct, kw_only=True):
    slug: str
    title: str
    state: str
    revision: str
    authors: list[str]
    approved_by: list[str]
    url: str


class DraftList(Struct, kw_only=True):
    items: list[DraftSummary]


class TokenIn(Struct, forbid_unknown_fields=True):
    name: Name
    email: Email
    roles: Annotated[list[Role], Meta(min_length=1)]


class TokenView(Struct, kw_only=True):
    id: str
    name: str
    email: str
    roles: list[str]
    created_at: datetime
    revoked_at: datetime | None = None


class TokenCreated(TokenView, kw_only=True):
    token: str
