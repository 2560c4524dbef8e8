"""The characters refused in names and addresses are listed once, as ranges the document can
state; they are exactly those the running Python's Unicode database calls hidden."""

from __future__ import annotations

import re
import unicodedata

import pytest

from cms.identity.tokens import Email, Name
from cms.identity.visible import HIDDEN, HIDDEN_RANGES, UNICODE_VERSION, first_hidden

# Default-ignorable code points outside the categories below (variation selectors, fillers).
_IGNORABLE = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x3164,
              0xFFA0, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)}


def _hidden_here() -> set[int]:
    return {code for code in range(0x110000)
            if unicodedata.category(chr(code)) in ("Cc", "Cf", "Co", "Cs", "Zl", "Zp")
            or (unicodedata.category(chr(code)) == "Zs" and code != 0x20) or code in _IGNORABLE}


def test_the_ranges_are_the_unicode_database_s() -> None:
    listed = {code for start, end in HIDDEN_RANGES for code in range(start, end + 1)}
    here = _hidden_here()
    # Nothing visible is refused, whatever the Python.
    assert listed <= here, sorted(listed - here)[:10]
    if unicodedata.unidata_version == UNICODE_VERSION:
        assert here == listed, sorted(here - listed)[:10]


@pytest.mark.parametrize("text", ["A\u00a0B", "A\u00adB", "A\ue000B", "A\u3000B", "A\u061cB",
                                  "A\U001076c6B", "A\u202eB", "A\x00B", "A\ufe0fB"])
def test_hidden_characters_are_found_and_the_patterns_refuse_them(text: str) -> None:
    assert first_hidden(text) == text[1]
    name_pattern = _pattern(Name)
    assert not re.search(name_pattern, text)
    assert not re.search(_pattern(Email), f"{text}@example.com")


@pytest.mark.parametrize("text", ["Ada Lovelace", "Zoë Ångström", "李雷", "O'Brien-Smith"])
def test_visible_names_pass(text: str) -> None:
    assert first_hidden(text) is None
    assert re.search(_pattern(Name), text)


def test_the_class_reads_the_same_as_a_pattern_for_any_client() -> None:
    # Only \\uXXXX escapes (BMP) and literal characters (beyond it): no Python-only syntax.
    assert "\\U" not in HIDDEN
    assert "\\x" not in HIDDEN


def _pattern(annotated: object) -> str:
    meta = annotated.__metadata__[0]  # type: ignore[attr-defined]
    return str(meta.pattern)
