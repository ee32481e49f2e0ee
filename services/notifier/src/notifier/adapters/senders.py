"""Delivery channels: e-mail over SMTP (connection reused, TLS configurable) and signed
webhooks for the city app's push backend."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
from jinja2 import Environment, FileSystemLoader, select_autoescape

from notifier.domain import Mail
from notifier.settings import NotifierSettings

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, locale: str, **context: Any) -> tuple[str, str, str]:
    """Subject, plain text and HTML of ``template`` in ``locale`` (de or en)."""
    locale = "en" if locale == "en" else "de"
    module = _env.get_template(f"{locale}/{template}.txt").make_module(context)
    subject = " ".join(str(getattr(module, "subject", "")).split())
    text = str(module)
    html = _env.get_template(f"{locale}/{template}.html").render(**context)
    return subject, text, html


class SmtpSender:
    """One SMTP connection, reused for every mail and re-opened when the server dropped it."""

    def __init__(self, settings: NotifierSettings) -> None:
        self._settings = settings
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()
        name, self._sender = parseaddr(settings.mail_from)
        self._from = (
            formataddr((str(Header(name, "utf-8")), self._sender)) if name else self._sender
        )

    def _message(self, mail: Mail) -> bytes:
        # The legacy email.mime classes: several times faster to build and serialise than
        # EmailMessage, which mattered at a thousand mails per second.
        msg = MIMEMultipart("alternative")
        msg["From"] = self._from
        msg["To"] = mail.to
        msg["Subject"] = Header(mail.subject, "utf-8")  # type: ignore[assignment]
        msg["Date"] = formatdate(localtime=False)
        # Deterministic per event and contact: should a mail ever go out twice, mail clients
        # show it once.
        msg["Message-ID"] = mail.message_id
        msg["List-Unsubscribe"] = f"<{mail.unsubscribe_url}>"
        msg.attach(MIMEText(mail.text, "plain", "utf-8"))
        msg.attach(MIMEText(mail.html, "html", "utf-8"))
        return msg.as_bytes()

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
                await client.login(s.smtp_username, s.smtp_password or "")
            self._client = client
        return self._client

    async def send(self, mail: Mail) -> None:
        message = self._message(mail)
        async with self._lock:
            try:
                client = await self._connected()
                await client.sendmail(self._sender, [mail.to], message)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                # A reused connection the server closed meanwhile: one fresh attempt.
                self._client = None
                client = await self._connected()
                await client.sendmail(self._sender, [mail.to], message)

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
                    self._settings.webhook_secret, timestamp, body
                ),
            },
        )
        response.raise_for_status()

    async def close(self) -> None:
        await self._client.aclose()
