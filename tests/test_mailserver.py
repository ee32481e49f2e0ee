"""The local stack's mail server stores each mail, whole, as one file in the Maildir."""

from __future__ import annotations

import asyncio
import email
import email.policy
from pathlib import Path

import aiosmtplib

from devstack.mailserver import serve
from devstack.processes import free_port, wait_for_port


async def test_every_mail_lands_whole_in_maildir_new(tmp_path: Path) -> None:
    port = free_port()
    server = asyncio.create_task(serve("127.0.0.1", port, tmp_path / "mail"))
    try:
        await asyncio.to_thread(wait_for_port, port, 10.0, "mail server")
        message = email.message.EmailMessage()
        message["From"], message["To"], message["Subject"] = (
            "a@example.org",
            "b@example.org",
            "Grüße",
        )
        message.set_content("Straße repariert.\n")
        for _ in range(3):
            await aiosmtplib.send(message, hostname="127.0.0.1", port=port)
    finally:
        server.cancel()
    stored = sorted((tmp_path / "mail" / "new").iterdir())
    assert len(stored) == 3
    assert not list((tmp_path / "mail" / "tmp").iterdir())
    parsed = email.message_from_bytes(stored[0].read_bytes(), policy=email.policy.default)
    assert parsed["Delivered-To"] == "b@example.org"
    assert parsed["Subject"] == "Grüße"
    assert parsed.get_content() == "Straße repariert.\n"
