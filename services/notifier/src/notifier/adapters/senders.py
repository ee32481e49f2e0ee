"""Delivery channels: e-mail over SMTP (connection reused, TLS configurable) and signed
webhooks for the city app's push backend."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr
from typing import Any
from uuid import uuid4

import aiosmtplib
import httpx

from notifier.domain import Mail
from notifier.ports import Ready
from notifier.settings import NotifierSettings


def encoded_word(text: str) -> str:
    """A header value as RFC 2047 encoded words (only if it is not plain ASCII), folded so that
    no line exceeds 78 characters and no UTF-8 character is split between two words."""
    if text.isascii():
        return text
    words, chunk = [], ""
    for char in text:
        if len((chunk + char).encode()) > 45:  # 45 bytes → 60 base64 chars, 72 with the frame
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w.encode()).decode()}?=" for w in words)


def mime_message(sender: str, mail: Mail) -> bytes:
    """The mail as a multipart/alternative MIME message (plain text and HTML, UTF-8, base64).

    Written out directly rather than through :mod:`email`'s generator, which took two thirds
    of the notifier's time per mail (header folding, boundary search). The tests parse what
    this writes with :mod:`email` and compare subject, text and HTML."""
    # "_" is outside the base64 alphabet: the boundary cannot occur in a base64 body.
    boundary = f"=_mm_{uuid4().hex}"

    def part(content_type: str, body: str) -> str:
        encoded = base64.encodebytes(body.encode()).decode().replace("\n", "\r\n")
        return (
            f'--{boundary}\r\nContent-Type: {content_type}; charset="utf-8"\r\n'
            f"MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}"
        )

    head = (
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
        "MIME-Version: 1.0\r\n"
        f"From: {sender}\r\n"
        f"To: {mail.to}\r\n"
        f"Subject: {encoded_word(mail.subject)}\r\n"
        f"Date: {formatdate(localtime=False)}\r\n"
        # Deterministic per event and contact: should a mail ever go out twice, mail clients
        # show it once.
        f"Message-ID: {mail.message_id}\r\n"
    )
    if mail.unsubscribe_url:
        # RFC 8058: mail clients offer "unsubscribe" and POST to the link themselves.
        head += (
            f"List-Unsubscribe: <{mail.unsubscribe_url}>\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        )
    head += "\r\n"
    return (
        head + part("text/plain", mail.text) + part("text/html", mail.html) + f"--{boundary}--\r\n"
    ).encode()


class SmtpSender:
    """One SMTP connection, reused for every mail and re-opened when the server dropped it."""

    def __init__(self, settings: NotifierSettings) -> None:
        self._settings = settings
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()
        name, self._sender = parseaddr(settings.mail_from)
        self._from = self._from_header(name)
        #: From headers by sender name: the same few cities' names over and over.
        self._froms: dict[str, str] = {}

    def _from_header(self, name: str) -> str:
        return formataddr((str(Header(name, "utf-8")), self._sender)) if name else self._sender

    def _message(self, mail: Mail) -> bytes:
        """From: the mail's city's sender name at the configured address (one address for
        every city: the one the SMTP relay and SPF/DKIM are set up for)."""
        if not mail.sender_name:
            return mime_message(self._from, mail)
        sender = self._froms.get(mail.sender_name)
        if sender is None:
            sender = self._froms[mail.sender_name] = self._from_header(mail.sender_name)
        return mime_message(sender, mail)

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is None or not self._client.is_connected:
            s = self._settings
            client = aiosmtplib.SMTP(
                hostname=s.smtp_host,
                port=s.smtp_port,
                use_tls=s.smtp_security == "tls",
                start_tls=s.smtp_security == "starttls",
                timeout=10,
            )
            await client.connect()
            if s.smtp_username:
                await client.login(
                    s.smtp_username, s.smtp_password.get_secret_value() if s.smtp_password else ""
                )
            self._client = client
        return self._client

    async def send(self, mail: Mail, ready: Ready | None = None) -> None:
        """Sends the mail. ``ready`` (if given) is awaited after the envelope and before the
        content, which is when the server takes the mail: should it raise, the mail is
        dropped unsent (RSET) and its exception raised."""
        message = self._message(mail)
        async with self._lock:
            try:
                await self._transaction(await self._connected(), mail.to, message, ready)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                # A reused connection the server closed meanwhile: one fresh attempt.
                self._client = None
                await self._transaction(await self._connected(), mail.to, message, ready)

    async def _transaction(
        self, client: aiosmtplib.SMTP, to: str, message: bytes, ready: Ready | None
    ) -> None:
        try:
            await client.mail(self._sender)
            await client.rcpt(to)
            if ready is not None:
                await ready()
            await client.data(message)
        except aiosmtplib.SMTPServerDisconnected:
            raise
        except BaseException:
            # The server forgets the envelope: the connection is ready for the next mail.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.rset()
            raise

    async def close(self) -> None:
        if self._client is not None and self._client.is_connected:
            try:
                await self._client.quit()
            except aiosmtplib.SMTPException:
                self._client.close()
        self._client = None


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Maengelmelder-Signature`` value: HMAC-SHA256 over ``timestamp.body`` (the timestamp
    lets the receiver refuse replays)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


class WebhookSender:
    def __init__(self, settings: NotifierSettings) -> None:
        self._settings = settings
        self._client = httpx.AsyncClient(timeout=10)

    async def send(self, payload: dict[str, Any], event_id: str) -> None:
        assert self._settings.webhook_url, "webhook_url is not configured"
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        timestamp = str(int(time.time()))
        response = await self._client.post(
            self._settings.webhook_url,
            content=body,
            headers={
                "content-type": "application/json",
                "x-maengelmelder-event-id": event_id,
                "x-maengelmelder-signature": signature(
                    self._settings.webhook_secret.get_secret_value(), timestamp, body
                ),
            },
        )
        response.raise_for_status()

    async def close(self) -> None:
        await self._client.aclose()
