"""Which characters text may carry here: what XML 1.0 allows. Every API refuses the rest where
text enters (one stored U+000B had made every Open311 XML answer holding it unparseable), and
every XML writer replaces them in what is stored already."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

#: The C0 controls except tab, line feed and carriage return (NUL among them, which PostgreSQL
#: cannot store either), lone surrogates, U+FFFE and U+FFFF.
FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
#: The same in percent-decoded UTF-8 bytes (a URL's path or query).
FORBIDDEN_BYTES = re.compile(
    rb"[\x00-\x08\x0b\x0c\x0e-\x1f]|\xef\xbf[\xbe\xbf]|\xed[\xa0-\xbf][\x80-\xbf]"
)
REPLACEMENT = "\N{REPLACEMENT CHARACTER}"


def forbidden_character(text: str) -> str | None:
    """The first character ``text`` may not carry, as ``U+000B``; None if there is none."""
    found = FORBIDDEN.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def forbidden_in_query(query: bytes) -> str | None:
    """The first character a raw query string may not carry once percent-decoded, as in
    :func:`forbidden_character`."""
    if b"%" not in query and not FORBIDDEN_BYTES.search(query):
        return None  # the usual case, without decoding
    found = FORBIDDEN_BYTES.search(unquote_to_bytes(query))
    if found is None:
        return None
    return f"U+{ord(found.group().decode('utf-8', 'surrogatepass')):04X}"


def why_forbidden(character: str) -> str:
    """The refusal's words, the same in every API."""
    return (
        f"must not contain the character {character}, which XML 1.0 forbids (tab, line feed "
        "and carriage return are fine)"
    )


def xml_safe(text: str) -> str:
    """``text`` with every character XML 1.0 forbids replaced by U+FFFD."""
    return FORBIDDEN.sub(REPLACEMENT, text)
