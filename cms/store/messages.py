"""Commit messages: a subject for people, a comment as the body, trailers for machines.

    Approve: Claude Haiku Open Weights vs Gemini 2.5 Flash Native Audio Output

    Looks right to me; the license caveat is clear now.

    Cms-Action: approve
    Cms-State: approved
    Cms-Document: comparisons/claude-haiku-open-weights-vs-gemini-2-5-flash-native-audio-output

The trailer block is the last paragraph, so ``git interpret-trailers --parse`` and
``git log --format=%(trailers)`` read it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from msgspec import Struct

_SUBJECT_LIMIT = 72
_TRAILER_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*): (.*)$")


class Message(Struct, frozen=True):
    subject: str
    comment: str
    trailers: tuple[tuple[str, str], ...]

    def values(self, key: str) -> list[str]:
        return [value for name, value in self.trailers if name.lower() == key.lower()]

    def first(self, key: str) -> str | None:
        found = self.values(key)
        return found[0] if found else None


def subject_line(verb: str, title: str) -> str:
    subject = f"{verb}: {' '.join(title.split())}"
    if len(subject) > _SUBJECT_LIMIT:
        cut = subject[: _SUBJECT_LIMIT - 1]
        if " " in cut[len(verb) + 2 :]:
            cut = cut.rsplit(" ", 1)[0]
        subject = cut.rstrip() + "…"
    return subject


def format_message(subject: str, comment: str, trailers: Sequence[tuple[str, str]]) -> str:
    parts = [subject]
    # Every line break some reader sees (a bare CR, a Unicode line separator) becomes a newline,
    # the only one git sees, so that every reader finds the same lines.
    comment = "\n".join(_inert(line) for line in comment.strip().splitlines())
    if comment:
        parts.append(comment)
    if trailers:
        parts.append("\n".join(f"{key}: {' '.join(value.split())}" for key, value in trailers))
    return "\n\n".join(parts) + "\n"


def _inert(line: str) -> str:
    """A comment line that git cannot take for the end of the message.

    ``git interpret-trailers`` reads the trailers in the last paragraph before a line starting
    with ``---`` (a patch) or a scissors line (``# ---- >8 ----``); such a line in a comment
    would make the comment's own last paragraph, not the CMS's, the trailer block. Indented by
    one space, the line reads the same to a person and means nothing to git.
    """
    if line.startswith(("---", "#")) or ">8" in line:
        return " " + line
    return line


def parse_message(text: str) -> Message:
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip("\n")) if p.strip()]
    if not paragraphs:
        return Message(subject="", comment="", trailers=())
    subject = paragraphs[0].strip()
    rest = paragraphs[1:]
    trailers: list[tuple[str, str]] = []
    if rest:
        lines = rest[-1].split("\n")
        matches = [_TRAILER_RE.match(line) for line in lines]
        if all(matches):
            trailers = [(m.group(1), m.group(2)) for m in matches if m]
            rest = rest[:-1]
    return Message(subject=subject, comment="\n\n".join(rest), trailers=tuple(trailers))
