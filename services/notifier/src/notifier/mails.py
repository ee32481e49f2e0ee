"""The notifier's messages, written from its templates: a reporter's status mail, an area alert,
the office's mail when a reporter reopens a report, the office's daily reminder, and the mail
asking to confirm an alert subscription. Pure rendering (Jinja templates), no I/O beyond
reading the templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape

from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.events import (
    STATUS_LABELS,
    OfficeReminderDue,
    OverdueTicket,
    ReportRouted,
    ReportStatusChanged,
)
from notifier.domain import AlertRequest, City, Claimed, Mail, Office

TEMPLATES = Path(__file__).resolve().parent / "templates"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    trim_blocks=True,
    lstrip_blocks=True,
    # The templates are part of the package: no file system check before every mail.
    auto_reload=False,
)


def compose(
    template: str,
    locale: str,
    *,
    to: str,
    message_id: str,
    unsubscribe_url: str | None = None,
    city: City | None = None,
    **context: Any,
) -> Mail:
    """The mail ``template`` in ``locale`` (de or en) writes: its subject (set in the text
    template), plain text and HTML; the templates see ``unsubscribe_url`` too, and
    ``jurisdiction_name``, the name of the ``city`` the mail is about (None: unknown)."""
    city = city or City()
    locale = "en" if locale == "en" else "de"
    context = {**context, "unsubscribe_url": unsubscribe_url, "jurisdiction_name": city.name}
    module = _env.get_template(f"{locale}/{template}.txt").make_module(context)
    return Mail(
        to=to,
        subject=" ".join(str(getattr(module, "subject", "")).split()),
        text=str(module),
        html=_env.get_template(f"{locale}/{template}.html").render(**context),
        message_id=message_id,
        unsubscribe_url=unsubscribe_url,
        sender_name=city.sender_name,
    )


class Mails:
    """Writes the messages, with links to the public pages (``public_base_url``: unsubscribe,
    preferences, confirmations) and to the reports (``tracking_base_url``)."""

    def __init__(self, public_base_url: str, tracking_base_url: str) -> None:
        self._public = public_base_url
        self._tracking = tracking_base_url

    def status_changed(self, event: ReportStatusChanged, to: Claimed) -> Mail:
        locale = "en" if to.locale == "en" else "de"
        category = CATEGORIES_BY_CODE.get(event.service_code)
        tracking = f"{self._tracking}/{event.report_id}"
        if to.reporter_token:  # the reporter's own link: with their actions
            tracking += f"?{urlencode({'token': to.reporter_token})}"
        return compose(
            "status_changed",
            locale,
            city=City(to.jurisdiction_name, to.sender_name),
            to=str(to.email),
            message_id=f"<{event.event_id}.{to.contact_id}@maengelmelder>",
            unsubscribe_url=f"{self._public}/v1/unsubscribe/{to.unsubscribe_token}",
            first_name=to.first_name,
            status=event.status.value,
            status_label=STATUS_LABELS[locale][event.status],
            note_only=event.note_only,
            reopened=event.reopened_by_reporter,
            # The reporter (who holds the token) reopened it; followers are told it was them.
            by_you=bool(to.reporter_token),
            category=category.name(locale) if category else event.service_code,
            office=event.office.name if event.office else "",
            public_note=event.public_note,
            tracking_url=tracking,
            original_url=f"{self._tracking}/{event.duplicate_of}" if event.duplicate_of else None,
            preferences_url=f"{self._public}/v1/preferences/{to.unsubscribe_token}",
        )

    def alert(self, event: ReportRouted, to: Claimed) -> Mail:
        locale = "en" if to.locale == "en" else "de"
        category = CATEGORIES_BY_CODE.get(event.service_code or "")
        area = next((a for a in event.areas if a.code == to.area_code), None) or (
            event.areas[-1] if event.areas else None
        )
        return compose(
            "alert",
            locale,
            city=City(to.jurisdiction_name, to.sender_name),
            to=str(to.email),
            message_id=f"<{event.event_id}.alert{to.subscription_id}@maengelmelder>",
            unsubscribe_url=f"{self._public}/alerts/unsubscribe/{to.unsubscribe_token}",
            category=category.name(locale) if category else event.service_code or "",
            area=area.name if area else None,
            office=event.office.name,
            report_url=f"{self._tracking}/{event.report_id}",
        )

    def office_reopened(self, event: ReportStatusChanged, office: Office, claim: Claimed) -> Mail:
        category = CATEGORIES_BY_CODE.get(event.service_code)
        return compose(
            "office_reopened",
            "de",
            city=City(claim.jurisdiction_name, claim.sender_name),
            to=office.email,
            message_id=f"<{event.event_id}.office@maengelmelder>",
            category=category.name_de if category else event.service_code,
            category_en=category.name_en if category else event.service_code,
            office=office.name,
            note=event.public_note,
            report_url=f"{self._tracking}/{event.report_id}",
        )

    def office_reminder(self, event: OfficeReminderDue, office: Office, city: City) -> Mail:
        def items(tickets: tuple[OverdueTicket, ...]) -> list[dict[str, Any]]:
            return [
                {
                    "category": CATEGORIES_BY_CODE[t.service_code].name_de
                    if t.service_code in CATEGORIES_BY_CODE
                    else t.service_code,
                    "days": t.days,
                    "url": f"{self._tracking}/{t.report_id}",
                }
                for t in tickets
            ]

        return compose(
            "office_reminder",
            "de",
            city=city,
            to=office.email,
            message_id=f"<{event.event_id}@maengelmelder>",
            office=office.name,
            day=event.day.isoformat(),
            not_accepted=items(event.not_accepted),
            stalled=items(event.stalled),
            past_service_level=items(event.past_service_level),
            accept_days=event.accept_within_working_days,
            work_days=event.work_within_days,
        )

    def alert_confirmation(self, request: AlertRequest, confirm_token: str, city: City) -> Mail:
        category = CATEGORIES_BY_CODE.get(request.service_code or "")
        locale = "en" if request.locale == "en" else "de"
        return compose(
            "alert_confirm",
            locale,
            city=city,
            to=request.email,
            message_id=f"<confirm.{confirm_token}@maengelmelder>",
            place=_alert_place(locale, request),
            category=category.name(locale) if category else request.service_code,
            confirm_url=f"{self._public}/alerts/confirm/{confirm_token}",
        )


def _alert_place(locale: str, request: AlertRequest) -> str:
    if request.point is not None:
        lat, long, radius_m = request.point
        where = "im Umkreis von" if locale == "de" else "within"
        return f"{where} {radius_m:.0f} m ({lat:.5f}, {long:.5f})"
    return f"{'im Gebiet' if locale == 'de' else 'in the area'} {request.area_code}"
