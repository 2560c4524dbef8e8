"""Text shown as written: what an auditor reads in `git log` is what was typed.

Names and addresses go into commit headers and trailers, so they may not hold a character that
shows nothing or changes how what follows is shown: controls, formats (bidirectional marks,
zero-width joiners), private use, surrogates, line and paragraph separators, spaces other than
the plain one, and the default-ignorable code points outside those categories (variation
selectors, fillers). The ranges are listed here, once, so that the OpenAPI document can state
the rule as a pattern and the check is that same pattern.
"""

from __future__ import annotations

import re

# Unicode categories Cc, Cf, Co, Cs, Zl, Zp, Zs but U+0020, and the other default-ignorables,
# as of Unicode 14.0 (tests/identity/test_visible.py compares them with the running Python's).
UNICODE_VERSION = "14.0.0"
HIDDEN_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F), (0x007F, 0x00A0), (0x00AD, 0x00AD), (0x034F, 0x034F), (0x0600, 0x0605),
    (0x061C, 0x061C), (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2),
    (0x115F, 0x1160), (0x1680, 0x1680), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x2000, 0x200F),
    (0x2028, 0x202F), (0x205F, 0x2064), (0x2066, 0x206F), (0x3000, 0x3000), (0x3164, 0x3164),
    (0xD800, 0xDFFF), (0xE000, 0xF8FF), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0),
    (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
    (0xE0100, 0xE01EF), (0xF0000, 0xFFFFD), (0x100000, 0x10FFFD),
)


def _escaped(code: int) -> str:
    # Escapes both Python's and ECMAScript's (unicode mode) patterns read the same way.
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


def _class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(_escaped(start) if start == end else f"{_escaped(start)}-{_escaped(end)}"
                   for start, end in ranges)


_SURROGATES = (0xD800, 0xDFFF)
# The body of a character class: every hidden character but the surrogates, which no JSON text
# that is UTF-8 can carry and which a pattern engine over Unicode scalar values cannot name.
HIDDEN = _class(tuple(pair for pair in HIDDEN_RANGES if pair != _SURROGATES))
_FIRST_HIDDEN = re.compile(f"[{_class(HIDDEN_RANGES)}]")


def first_hidden(text: str) -> str | None:
    """The first character of ``text`` that is not shown as written, if there is one."""
    found = _FIRST_HIDDEN.search(text)
    return found.group() if found else None


# A person as commits name them, in a header and in trailers: no angle brackets, only characters
# shown as written; an address has one `@` and no spaces.
NAME_PATTERN = f"^[^<>{HIDDEN}]+\\Z"
EMAIL_PATTERN = f"^[^<>{HIDDEN}\\s@]+@[^<>{HIDDEN}\\s@]+\\Z"
