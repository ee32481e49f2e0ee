"""The hand-written MIME message reads back with the standard library exactly as meant."""

from __future__ import annotations

import email
import email.policy

import pytest

from notifier.adapters.senders import mime_message
from notifier.domain import Mail

SUBJECTS = [
    "Your report: status changed",
    "Ihre Meldung „Schlagloch“: Status geändert – in Bearbeitung",
    "Überfüllter Papierkorb " * 8,  # several encoded words, folded
    "😀 Emoji und ß",
]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_the_message_parses_back_to_what_was_written(subject: str) -> None:
    mail = Mail(
        to="bürger@example.org".replace("ü", "ue"),
        subject=subject,
        text="Guten Tag,\nIhre Meldung wurde geändert.\n" + "Zeile mit Umlauten äöü. " * 40,
        html="<p>Guten Tag, <b>geändert</b></p>" * 30,
        message_id="<e1.7@maengelmelder>",
        unsubscribe_url="http://127.0.0.1:8002/v1/unsubscribe/abc",
    )
    raw = mime_message("=?utf-8?q?M=C3=A4ngelmelder?= <noreply@example.org>", mail)

    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw.isascii()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == subject
    assert message["To"] == mail.to
    assert message["Message-ID"] == mail.message_id
    assert message["List-Unsubscribe"] == f"<{mail.unsubscribe_url}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(message["From"]) == "Mängelmelder <noreply@example.org>"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert text.get_content() == mail.text
    assert html.get_content() == mail.html
