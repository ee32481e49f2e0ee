"""A report's public status as a page, for people who open the link in their mail in a browser
(the same address gives apps JSON). Public data only: no contact data, no internal notes."""

from __future__ import annotations

from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse

from intake.domain import Report
from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.events import STATUS_LABELS
from mm_shared.service import html_page

WORDS = {
    "de": {
        "title": "Ihre Meldung",
        "status": "Status",
        "office": "Zuständig",
        "reported": "Gemeldet",
        "place": "Ort",
        "map": "Karte",
        "history": "Verlauf",
        "unknown": "Diese Meldung gibt es nicht (mehr).",
        "nobody": "wird noch zugewiesen",
    },
    "en": {
        "title": "Your report",
        "status": "Status",
        "office": "Handled by",
        "reported": "Reported",
        "place": "Place",
        "map": "map",
        "history": "History",
        "unknown": "There is no such report.",
        "nobody": "being assigned",
    },
}


def wants_page(request: Request) -> bool:
    """A browser asks for HTML first; apps and scripts ask for JSON or anything."""
    return "text/html" in request.headers.get("accept", "")


def language(request: Request) -> str:
    return "en" if request.headers.get("accept-language", "").lower().startswith("en") else "de"


def _page(lang: str, title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return html_page(body, title=f"{title} – Mängelmelder", lang=lang, status_code=status_code)


def unknown_report_page(lang: str) -> HTMLResponse:
    return _page(lang, WORDS[lang]["title"], f"<p>{WORDS[lang]['unknown']}</p>", 404)


def report_page(
    report: Report, photo_urls: list[dict[str, str]], lang: str, tz: ZoneInfo
) -> HTMLResponse:
    words, labels = WORDS[lang], STATUS_LABELS[lang]

    def when(at: datetime | None) -> str:
        return at.astimezone(tz).strftime("%d.%m.%Y %H:%M") if at else ""

    category = CATEGORIES_BY_CODE.get(report.service_code)
    what = category.name(lang) if category else report.service_code
    office = report.office.name if report.office else words["nobody"]
    where = escape(report.address) if report.address else f"{report.lat:.5f}, {report.long:.5f}"
    osm = (
        f"https://www.openstreetmap.org/?mlat={report.lat}&amp;mlon={report.long}"
        f"#map=18/{report.lat}/{report.long}"
    )
    photos = "".join(
        f'<a href="{escape(p["url"])}"><img src="{escape(p["thumbnail_url"])}" alt=""></a> '
        for p in photo_urls
    )
    history = "".join(
        f"<li>{when(c.changed_at)}: {escape(labels[c.status])}"
        + (f" – {escape(c.public_note)}" if c.public_note else "")
        + "</li>"
        for c in report.history
    )
    body = (
        f"<h1>{escape(what)}</h1>"
        f"<p><strong>{words['status']}:</strong> {escape(labels[report.status])}</p>"
        f"<p><strong>{words['office']}:</strong> {escape(office)}</p>"
        f"<p><strong>{words['reported']}:</strong> {when(report.requested_at)}</p>"
        f'<p><strong>{words["place"]}:</strong> {where} (<a href="{osm}">{words["map"]}</a>)</p>'
        + (f"<p>{escape(report.description)}</p>" if report.description else "")
        + (f"<p>{photos}</p>" if photos else "")
        + f"<h2>{words['history']}</h2><ul>{history}</ul>"
    )
    return _page(lang, f"{words['title']}: {what}", body)
