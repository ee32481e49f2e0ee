"""Rendering (Jinja2, German and English, text and HTML) and sending (SMTP) of e-mails."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
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
    subject = str(getattr(module, "subject", "")).strip()
    text = str(module)
    html = _env.get_template(f"{locale}/{template}.html").render(**context)
    return subject, text, html


class SmtpSender:
    def __init__(self, settings: NotifierSettings) -> None:
        self._settings = settings

    def _message(self, mail: Mail) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self._settings.mail_from
        msg["To"] = mail.to
        msg["Subject"] = mail.subject
        # Deterministic per event: should a mail ever go out twice, clients show it once.
        msg["Message-ID"] = mail.message_id
        msg.set_content(mail.text)
        msg.add_alternative(mail.html, subtype="html")
        return msg

    async def send(self, mail: Mail) -> None:
        s = self._settings
        await aiosmtplib.send(
            self._message(mail),
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password,
            use_tls=s.smtp_security == "tls",
            start_tls=s.smtp_security == "starttls",
            timeout=10,
        )
