import pytest

from mm_shared.text import forbidden_character, forbidden_in_query, xml_safe


@pytest.mark.parametrize(
    ("query", "found"),
    [
        (b"q=Haust%C3%BCr&x=1", None),
        (b"q=a%09b%0Ac%0dd+e", None),  # tab, line feed, carriage return
        (b"q=%00", "U+0000"),
        (b"q=%0b", "U+000B"),
        (b"q=a%1Fb", "U+001F"),
        (b"q=%EF%BF%BE", "U+FFFE"),
        (b"q=%ef%bf%bf", "U+FFFF"),
        (b"q=%ED%A0%80", "U+D800"),
    ],
)
def test_forbidden_characters_are_found_in_a_raw_query(query: bytes, found: str | None) -> None:
    assert forbidden_in_query(query) == found


def test_xml_safe_replaces_only_what_xml_forbids() -> None:
    text = "Grüße\t\r\n\x01\x0b\ud800\ufffe€"
    assert forbidden_character(text) == "U+0001"
    assert xml_safe(text) == "Grüße\t\r\n\ufffd\ufffd\ufffd\ufffd€"
    assert forbidden_character(xml_safe(text)) is None
