"""What the console's pages show, computed from the services' answers: the queue's filter and
its links, labels, and the statistics charts' geometry (the SVG itself is in the template).
Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from mm_shared.categories import CATEGORIES, CATEGORIES_BY_CODE
from mm_shared.events import STATUS_LABELS, ReportStatus

TZ = ZoneInfo("Europe/Berlin")
PAGE_SIZE = 25
AGES = ("", "3", "7", "14", "30")
SORTS = (
    "-requested_at",
    "requested_at",
    "-updated_at",
    "expected_at",
    "status",
    "service_code",
)
#: The statuses staff choose on a ticket (``assigned`` to another office is reassigning).
ACTIONS = ("note", "in_progress", "resolved", "rejected")


@dataclass(frozen=True)
class QueueFilter:
    """The queue page's query, as the page's form and links carry it."""

    status: str = ""
    service_code: str = ""
    area: str = ""
    age: str = ""
    overdue: bool = False
    q: str = ""
    sort: str = "-requested_at"
    page: int = 1

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> QueueFilter:
        status = query.get("status", "")
        code = query.get("service_code", "")
        sort = query.get("sort", "-requested_at")
        age = query.get("age", "")
        try:
            page = max(1, min(int(query.get("page", "1")), 10_000))
        except ValueError:
            page = 1
        return cls(
            status=status if status in {s.value for s in ReportStatus} else "",
            service_code=code if code in CATEGORIES_BY_CODE else "",
            area=query.get("area", "")[:200],
            age=age if age in AGES else "",
            overdue=query.get("overdue") == "1",
            q=query.get("q", "").strip()[:200],
            sort=sort if sort in SORTS else "-requested_at",
            page=page,
        )

    def api_params(self) -> dict[str, Any]:
        """The same filter for intake's staff API (without paging)."""
        params: dict[str, Any] = {"sort": self.sort}
        if self.status:
            params["status"] = self.status
        if self.service_code:
            params["service_code"] = self.service_code
        if self.area:
            params["area"] = self.area
        if self.age:
            params["older_than_days"] = self.age
        if self.overdue:
            params["overdue"] = "true"
        if self.q:
            params["q"] = self.q
        return params

    def query(self, **changes: Any) -> str:
        """This filter's query string, with ``changes`` (a new filter starts at page 1)."""
        values = {
            "status": self.status,
            "service_code": self.service_code,
            "area": self.area,
            "age": self.age,
            "overdue": "1" if self.overdue else "",
            "q": self.q,
            "sort": self.sort if self.sort != "-requested_at" else "",
            "page": str(self.page) if self.page > 1 else "",
        }
        if changes and "page" not in changes:
            values["page"] = ""
        for key, value in changes.items():
            values[key] = "" if value in (None, False) else ("1" if value is True else str(value))
        return urlencode({k: v for k, v in values.items() if v})


def category_name(code: str, lang: str) -> str:
    category = CATEGORIES_BY_CODE.get(code)
    return category.name(lang) if category else code


def categories(lang: str) -> list[tuple[str, str]]:
    return [(c.code, c.name(lang)) for c in CATEGORIES]


def status_label(status: str, lang: str) -> str:
    """The status as the citizens read it; offices say "Duplikat" for short."""
    if status == ReportStatus.DUPLICATE.value:
        return "Duplikat" if lang == "de" else "duplicate"
    try:
        return STATUS_LABELS[lang][ReportStatus(status)]
    except (KeyError, ValueError):
        return status


#: Who changed a ticket, as intake records it (``changed_by``) → (German, English).
ACTORS = {
    "citizen": ("meldende Person", "reporter"),
    "reporter": ("meldende Person", "reporter"),
    "geo-router": ("automatische Zuordnung", "automatic routing"),
}


def actor(changed_by: str, lang: str) -> str:
    """Who made a change, in words: a member of staff by name, the reporter, the routing."""
    if changed_by.startswith("staff:"):
        return changed_by.removeprefix("staff:")
    names = ACTORS.get(changed_by)
    if names is None:
        return changed_by
    return names[1] if lang == "en" else names[0]


def when(iso: str | None, *, with_time: bool = True) -> str:
    """An ISO timestamp in Leipzig's time, as German offices write it."""
    if not iso:
        return ""
    moment = datetime.fromisoformat(iso).astimezone(TZ)
    return moment.strftime("%d.%m.%Y %H:%M" if with_time else "%d.%m.%Y")


def area_names(areas: Sequence[Mapping[str, str]]) -> str:
    """Ortsteil (Stadtbezirk), from the areas routing matched."""
    by_level = {a.get("level"): a.get("name") for a in areas}
    ortsteil, bezirk = by_level.get("ortsteil"), by_level.get("stadtbezirk")
    if ortsteil and bezirk:
        return f"{ortsteil} ({bezirk})"
    return ortsteil or bezirk or ""


def photo_path(url: str, variant: str) -> str:
    """Intake's photo address as web serves it (pages load nothing from other origins)."""
    digest = url.rstrip("/").split("/")[-2]
    return f"/staff/photos/{digest}/{variant}"


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    #: Geometry in the chart's SVG user units.
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Chart:
    """A bar chart: horizontal (categories, areas: long labels) or vertical (months)."""

    bars: list[Bar]
    width: float
    height: float
    horizontal: bool
    maximum: int
    ticks: list[tuple[float, int]] = field(default_factory=list)
    #: Each bar under its label (:func:`stacked_chart`), not beside it.
    stacked: bool = False


LABEL_WIDTH = 215.0
BAR_THICKNESS = 22.0
GAP = 8.0


def horizontal_chart(rows: Sequence[tuple[str, int]], width: float = 500.0) -> Chart:
    maximum = max((v for _, v in rows), default=0) or 1
    span = width - LABEL_WIDTH - 50
    bars = [
        Bar(
            label,
            value,
            LABEL_WIDTH,
            GAP + i * (BAR_THICKNESS + GAP),
            max(span * value / maximum, 1.0 if value else 0.0),
            BAR_THICKNESS,
        )
        for i, (label, value) in enumerate(rows)
    ]
    height = GAP + len(rows) * (BAR_THICKNESS + GAP) + 4
    return Chart(bars, width, max(height, 40.0), True, maximum)


def vertical_chart(rows: Sequence[tuple[str, int]], height: float = 220.0) -> Chart:
    maximum = max((v for _, v in rows), default=0) or 1
    slot = 48.0
    plot = height - 40
    bars = [
        Bar(
            label,
            value,
            40 + i * slot + 8,
            10 + plot - plot * value / maximum,
            slot - 16,
            plot * value / maximum,
        )
        for i, (label, value) in enumerate(rows)
    ]
    # Whole numbers, each at its own height: a tick at half of an odd maximum would be
    # labelled with a rounded value that its line does not mark.
    ticks = [(10 + plot - plot * v / maximum, v) for v in sorted({0, maximum // 2, maximum})]
    return Chart(bars, 40 + max(len(rows), 1) * slot + 10, height, False, maximum, ticks)


#: The phones' charts' width in SVG user units: about a phone's column in CSS pixels, so that
#: the labels keep about the size they are given (a wider chart is scaled down to the column,
#: and its labels with it).
NARROW_WIDTH = 300.0
STACKED_ROW = 44.0
STACKED_BAR = 16.0


def stacked_chart(rows: Sequence[tuple[str, int]], width: float = NARROW_WIDTH) -> Chart:
    """The phones' chart of any of the statistics: each bar under its label, across the whole
    width. Beside a label (or under a month) a bar would have too little room at that width."""
    maximum = max((v for _, v in rows), default=0) or 1
    span = width - 50
    bars = [
        Bar(
            label,
            value,
            0.0,
            4 + i * STACKED_ROW + 19,
            max(span * value / maximum, 1.0 if value else 0.0),
            STACKED_BAR,
        )
        for i, (label, value) in enumerate(rows)
    ]
    height = 4 + len(rows) * STACKED_ROW + 4
    return Chart(bars, width, max(height, 40.0), True, maximum, stacked=True)


def percent(share: float | None, lang: str) -> str:
    if share is None:
        return "–"
    text = f"{share * 100:.1f} %"
    return text.replace(".", ",") if lang == "de" else text


def hours(value: float | None, lang: str) -> str:
    if value is None:
        return "–"
    if value < 1:
        return f"{round(value * 60)} Min." if lang == "de" else f"{round(value * 60)} min"
    if value >= 48:
        days = value / 24
        return f"{days:.1f} Tage".replace(".", ",") if lang == "de" else f"{days:.1f} days"
    text = f"{value:.1f}"
    return f"{text.replace('.', ',')} Std." if lang == "de" else f"{text} h"
