"""The local stack's SMTP server: every mail lands as one file in a Maildir.

``python -m devstack.mailserver 127.0.0.1:1025 var/mail``

aiosmtpd speaks the protocol; the handler writes each message straight into ``tmp/`` and moves
it to ``new/`` (the Maildir delivery rule: readers never see half a file). aiosmtpd's stock
``Mailbox`` handler goes through :mod:`mailbox`, which parses and re-serialises every message;
with it the server itself, not the notifier, was the ceiling of a local delivery benchmark.
Note that a Maildir costs a file creation and a rename per mail: on a slow disk that, not the
server, sets the pace (``bench/notifications.py`` measures the disk alongside).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sys
import time
from pathlib import Path

import uvloop
from aiosmtpd.smtp import SMTP, Envelope, Session


class MaildirHandler:
    def __init__(self, maildir: Path) -> None:
        self._tmp, self._new = maildir / "tmp", maildir / "new"
        for folder in (self._tmp, self._new, maildir / "cur"):
            folder.mkdir(parents=True, exist_ok=True)
        self._unique = f"{os.getpid()}.{socket.gethostname()}"
        self._sequence = itertools.count()

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        name = f"{time.time_ns()}.M{next(self._sequence)}P{self._unique}"
        content = envelope.original_content or b""
        recipients = ", ".join(envelope.rcpt_tos)
        # Maildir files have Unix line ends; SMTP carries CRLF.
        message = f"Delivered-To: {recipients}\r\n".encode() + content
        (self._tmp / name).write_bytes(message.replace(b"\r\n", b"\n"))
        os.replace(self._tmp / name, self._new / name)
        return "250 OK"


async def serve(host: str, port: int, maildir: Path) -> None:
    handler = MaildirHandler(maildir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="maengelmelder.local"), host, port
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    listen, maildir = sys.argv[1], Path(sys.argv[2])
    host, _, port = listen.rpartition(":")
    uvloop.run(serve(host, int(port), maildir))


if __name__ == "__main__":
    main()
