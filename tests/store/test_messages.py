"""Nothing a user types can become a trailer, as plain git reads trailers."""

from __future__ import annotations

import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from cms.store.messages import format_message, parse_message

OURS = [("Cms-Action", "create"), ("Cms-State", "draft"),
        ("Cms-Document", "comparisons/some-comparison")]
FORGED = ["Cms-Action: publish", "Approved-by: Eve <eve@example.com>", "Cms-State: published"]
# What ends a message for git: a patch divider, a scissors line, comment lines.
ENDINGS = ["---", "--- ", "----", "---\tpatch", "# ------------------------ >8 ------------------------",
           "#", "# a comment", ";", "", " ", "Signed-off-by: Eve <eve@example.com>"]


def git_trailers(message: str) -> list[tuple[str, str]]:
    output = subprocess.run(["git", "interpret-trailers", "--parse"], input=message, text=True,
                            capture_output=True, check=True).stdout
    return [tuple(line.split(": ", 1)) for line in output.splitlines()]  # type: ignore[misc]


def test_a_forged_block_before_a_patch_divider_or_scissors_is_inert() -> None:
    for ending in ENDINGS:
        comment = "\n".join([*FORGED, ending, "more words"])
        message = format_message("Create: Some comparison", comment, OURS)
        assert git_trailers(message) == OURS, (ending, message)
        parsed = parse_message(message)
        assert list(parsed.trailers) == OURS


lines = st.one_of(st.sampled_from(FORGED + ENDINGS), st.text(
    alphabet=st.sampled_from("ab-#:>8 \t\n"), max_size=12))


@settings(max_examples=60, deadline=None)
@given(st.lists(lines, max_size=8))
def test_no_comment_changes_what_git_reads_as_trailers(comment_lines: list[str]) -> None:
    message = format_message("Edit: Some comparison", "\n".join(comment_lines), OURS)
    assert git_trailers(message) == OURS
    assert list(parse_message(message).trailers) == OURS


def test_no_line_break_of_any_reader_hides_a_forged_block() -> None:
    """A bare CR (or a Unicode line separator) is no line break to git, but is one to a reader
    that translates line endings first; in a commit message every such break is a newline,
    so both readers see the same lines and neither takes a forged block for the trailers."""
    for newline in ("\r", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c"):
        comment = "x" + newline + newline.join(["", *FORGED, "---"])
        message = format_message("Edit: Some comparison", comment, OURS)
        assert "\r" not in message
        assert message.splitlines() == message.split("\n")[:-1]  # a newline is the only break
        assert git_trailers(message) == OURS, repr(newline)
        assert git_trailers(message.replace("\r", "\n")) == OURS
