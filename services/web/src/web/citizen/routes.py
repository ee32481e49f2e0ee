"""The citizens' pages (see :mod:`web.citizen`): every page works without JavaScript; the
scripts add the maps, duplicate hints before sending and photo scaling."""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from mm_shared.categories import CATEGORIES, CATEGORIES_BY_CODE
from mm_shared.events import STATUS_LABELS, ReportStatus
from web import csrf, geography
from web.adapters.services import Answer, Services, ServiceUnavailable, whole_number
from web.cities import Cities, City, city_of
from web.citizen.forms import (
    EMAIL,
    HONEYPOT,
    MAX_PHOTO_BYTES,
    MAX_PHOTOS,
    ReportForm,
    category_groups,
    intake_refusal,
    questions,
    read_report_form,
)
from web.i18n import Lang, language
from web.ratelimit import SlidingWindow, client_address
from web.settings import WebSettings
from web.templating import render, switchable_address

OPEN = ("received", "assigned", "in_progress")
CLOSED = ("resolved", "rejected", "duplicate")
#: "Recently closed" on the map: closed within this many days.
RECENTLY_CLOSED_DAYS = 30
PAGE_SIZE = 20
#: Duplicate hints look this far (intake's own radius is ~50 m).
NEARBY_M = 50.0
DIGEST = re.compile(r"^[0-9a-f]{64}$")
REPORT_ID = r"{report_id:uuid}"


def distance_m(lat1: float, long1: float, lat2: float, long2: float) -> float:
    rad = math.pi / 180
    x = (long2 - long1) * rad * math.cos((lat1 + lat2) / 2 * rad)
    return math.hypot(x, (lat2 - lat1) * rad) * 6_371_000


class Citizen:
    """What the citizens' pages share: the services, the limits, the areas."""

    def __init__(self, services: Services, settings: WebSettings) -> None:
        self.services = services
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)
        self.per_address = SlidingWindow(
            settings.rate_limit_per_address, settings.rate_limit_window_s
        )
        self.per_email = SlidingWindow(settings.rate_limit_per_email, settings.rate_limit_window_s)
        self._outlines = geography.PerAnswer(geography.simplified)
        self._boxes = geography.PerAnswer(geography.outline_box)

    # -- helpers ------------------------------------------------------------------------------

    def client(self, request: Request) -> str:
        return client_address(request, self.settings.trusted_proxies)

    def forwarded(self, request: Request) -> dict[str, str]:
        """Intake limits its API per client address: it hears the citizen's, not web's."""
        return {"X-Forwarded-For": self.client(request)}

    def refused_by_limit(self, request: Request, email: str | None = None) -> Response | None:
        """The friendly 429 page when this address (or e-mail address) has sent enough."""
        retry = self.per_address.retry_after(self.client(request))
        if retry is None and email:
            retry = self.per_email.retry_after(email.strip().lower())
        return self.too_many(request, retry) if retry is not None else None

    def passed_on_limit(self, request: Request, answer: Answer) -> Response | None:
        """A service's own 429 as the same friendly page."""
        if answer.status != 429:
            return None
        retry = answer.headers.get("retry-after", "60")
        seconds = whole_number(retry)
        return self.too_many(request, 60 if seconds is None else seconds)

    def too_many(self, request: Request, retry_after_s: int) -> Response:
        minutes = max(1, math.ceil(retry_after_s / 60))
        return render(
            request,
            "citizen/too_many.html",
            {"minutes": minutes},
            status_code=429,
            headers={"Retry-After": str(retry_after_s)},
        )

    async def outlines(self, city: City) -> dict[str, Any]:
        """The city's areas of every level, simplified for the browser (recomputed when
        geo-router's answer changes)."""
        areas = await self.services.areas(jurisdiction=city.code)
        return self._outlines.of(city.code, areas)

    async def city_box(self, city: City) -> geography.Box:
        """The city's bounding box: intake's, else that of its areas' outline level."""
        if city.bbox is not None:
            return city.bbox
        box = self._boxes.of(city.code, await self.services.areas(jurisdiction=city.code))
        if box is None:
            raise ServiceUnavailable("geo_router")
        return box

    def when(self, iso: str | None, lang: Lang) -> str:
        if not iso:
            return ""
        moment = datetime.fromisoformat(iso).astimezone(self.tz)
        if lang == "en":
            return moment.strftime("%-d %b %Y, %H:%M")
        return moment.strftime("%d.%m.%Y, %H:%M Uhr")

    def category_name(self, code: str, lang: Lang) -> str:
        category = CATEGORIES_BY_CODE.get(code)
        return category.name(lang) if category else code

    def listed(self, feature: dict[str, Any], lang: Lang) -> dict[str, Any]:
        """A report of intake's public list, as the pages show it."""
        properties = feature["properties"]
        long, lat = feature["geometry"]["coordinates"]
        status = properties["status"]
        office = properties.get("office") or {}
        return {
            "id": properties.get("id") or feature.get("id"),
            "category": self.category_name(properties["service_code"], lang),
            "service_code": properties["service_code"],
            "status": status,
            "status_label": STATUS_LABELS[lang][ReportStatus(status)],
            "requested_at": properties.get("requested_at"),
            "updated_at": properties.get("updated_at"),
            "when": self.when(properties.get("requested_at"), lang),
            "description": properties.get("description") or "",
            "address": properties.get("address") or "",
            "office": office.get("name") or properties.get("agency_responsible") or "",
            "lat": lat,
            "long": long,
        }

    async def public_list(
        self,
        lang: Lang,
        *,
        status: str = "open",
        service_code: str = "",
        area: dict[str, Any] | None = None,
        box: geography.Box | None = None,
        limit: int = 1000,
        city: City | None = None,
    ) -> list[dict[str, Any]]:
        """Intake's public list (newest first). The box is always sent (intake needs one unless
        it knows ``area``); the area's and category's filters are applied here too, so the
        answer is right whichever filters intake knows."""
        if box is None:
            assert area is not None or city is not None, "a box, an area or a city"
            box = geography.bbox([area]) if area else await self.city_box(city)  # type: ignore[arg-type]
            assert box is not None
        params: dict[str, Any] = {
            "bbox": ",".join(f"{v:.6f}" for v in box),
            "status": "all" if status == "recent" else status,
            "limit": limit,
        }
        if service_code:
            params["service_code"] = service_code
        if area:
            params["area"] = area["properties"]["code"]
        answer = await self.services.call("intake", "GET", "/api/v1/reports", params=params)
        if not answer.ok:
            return []
        reports = [self.listed(f, lang) for f in answer.body.get("features", [])]
        if service_code:
            codes = set(service_code.split(","))
            reports = [r for r in reports if r["service_code"] in codes]
        if area:
            reports = [r for r in reports if geography.contains(area, r["lat"], r["long"])]
        if status == "recent":
            since = (datetime.now(UTC) - timedelta(days=RECENTLY_CLOSED_DAYS)).isoformat()
            reports = [
                r for r in reports if r["status"] in OPEN or (r["updated_at"] or "") >= since
            ]
        reports.sort(key=lambda r: r["requested_at"] or "", reverse=True)
        return reports

    async def nearby(
        self, service_code: str, lat: float, long: float, lang: Lang
    ) -> list[dict[str, Any]]:
        """Open reports of the same kind within :data:`NEARBY_M`, nearest first."""
        dlat = NEARBY_M / 111_000
        dlong = NEARBY_M / (111_000 * math.cos(math.radians(lat)))
        box = (long - dlong, lat - dlat, long + dlong, lat + dlat)
        found = await self.public_list(lang, service_code=service_code, box=box, limit=50)
        for report in found:
            report["distance_m"] = round(distance_m(lat, long, report["lat"], report["long"]))
        return sorted(
            (r for r in found if r["distance_m"] <= NEARBY_M), key=lambda r: r["distance_m"]
        )

    async def form_context(self, request: Request, report: ReportForm) -> dict[str, Any]:
        lang = language(request)
        city = city_of(request)
        definitions = await self.services.service_definitions()
        attribute_sets = [
            {
                "code": code,
                "name": self.category_name(code, lang),
                "questions": questions(definition, lang),
            }
            for code, definition in sorted(definitions.items())
            if questions(definition, lang) and code not in city.disabled_service_codes
        ]
        anchors = {
            "service_code": "service_code",
            "place": "lat",
            "form": "send",
            **{name: name for name in ("description", "photos", "email", "name", "address")},
        }
        chosen = report.values.get("service_code", "")
        for q in questions(definitions.get(chosen, {}), lang):
            first = f"-{q.values[0][0]}" if q.values else ""
            anchors[f"attribute[{q.code}]"] = f"attribute-{chosen}-{q.code}{first}"
        return {
            "example": await self.example_place(city),
            "anchors": anchors,
            "groups": category_groups(lang, city.disabled_service_codes),
            "attribute_sets": attribute_sets,
            "form": report,
            "errors": report.errors,
            "max_photos": MAX_PHOTOS,
            "max_photo_mb": MAX_PHOTO_BYTES // 2**20,
            "geocoder": self.services.geocoder is not None,
            "honeypot": HONEYPOT,
        }

    async def example_place(self, city: City) -> tuple[str, str]:
        """A place in the city's middle (lat, long), as the coordinate fields' example."""
        try:
            box = await self.city_box(city)
        except ServiceUnavailable:  # the forms work without the areas: a plain example
            return ("51.3397", "12.3731")
        return (f"{(box[1] + box[3]) / 2:.4f}", f"{(box[0] + box[2]) / 2:.4f}")

    async def show_form(
        self, request: Request, report: ReportForm, status_code: int = 200
    ) -> Response:
        context = await self.form_context(request, report)
        return render(request, "citizen/form.html", context, status_code=status_code)

    async def read_form(self, request: Request, max_files: int = 0) -> FormData:
        """A POST's form, CSRF-checked. Browsers always send a Content-Length for forms; one
        over the limit is refused before it is read."""
        declared = whole_number(request.headers.get("content-length", ""), max_digits=18)
        if declared is None or declared > self.settings.max_body_bytes:
            raise HTTPException(status_code=411 if declared is None else 413)
        form = await request.form(max_files=max_files, max_fields=100)
        csrf.verify(request, form)
        return form


def _values(request: Request, *names: str) -> dict[str, str]:
    return {n: request.query_params.get(n, "")[:200] for n in names}


def router(services: Services, settings: WebSettings, cities: Cities) -> APIRouter:
    pages = APIRouter()
    citizen = Citizen(services, settings)

    # -- report a defect ------------------------------------------------------------------------

    @pages.get("/", response_class=HTMLResponse)
    async def report_form(request: Request) -> Response:
        values = _values(request, "service_code", "lat", "long")
        report = ReportForm(values=values, submission_id=str(uuid.uuid4()))
        return await citizen.show_form(request, report)

    @pages.post("/", response_class=HTMLResponse)
    async def submit_report(request: Request) -> Response:
        lang = language(request)
        try:
            form = await citizen.read_form(request, max_files=MAX_PHOTOS + 1)
        except HTTPException as too_large:
            if too_large.status_code != 413:
                raise
            report = ReportForm(values={}, submission_id=str(uuid.uuid4()))
            report.errors["photos"] = "form.error.photo_large"
            return await citizen.show_form(request, report, 413)
        definitions = await services.service_definitions()
        city = city_of(request)
        chosen = str(form.get("service_code", ""))
        report = await read_report_form(form, questions(definitions.get(chosen, {}), lang))
        if chosen in city.disabled_service_codes:
            report.errors["service_code"] = "form.error.category"
        report.submission_id = report.submission_id or str(uuid.uuid4())
        if report.honeypot_filled:
            report.errors["form"] = "form.error.honeypot"
        if "place" in report.errors and report.values["address"] and services.geocoder:
            found = await services.geocode(report.values["address"], city)
            if found:
                report.values["lat"], report.values["long"] = (f"{v:.6f}" for v in found)
                del report.errors["place"]
            else:
                report.errors["place"] = "form.error.address_unknown"
        if report.errors:
            return await citizen.show_form(request, report, 422)
        if refused := citizen.refused_by_limit(request, report.email):
            return refused
        headers = citizen.forwarded(request) | {"Idempotency-Key": report.submission_id}
        if report.acknowledge_duplicate:
            headers["X-Acknowledge-Duplicate"] = "true"
        fields = report.intake_fields(lang)
        if cities.listed:  # an intake that serves several cities takes the one meant
            fields["jurisdiction"] = city.code
        answer = await services.call(
            "intake",
            "POST",
            "/api/v1/reports",
            data=fields,
            files=[("photos", photo) for photo in report.photos] or None,
            headers=headers,
        )
        if answer.ok:
            return _sent(answer, city)
        if answer.status == 409 and "possible_duplicates" in answer.error_codes():
            duplicates = [
                citizen.listed(_as_feature(d), lang) | {"distance_m": round(d.get("distance_m", 0))}
                for d in answer.body.get("duplicates", [])
            ]
            return render(
                request,
                "citizen/duplicates.html",
                {"form": report, "duplicates": duplicates, "photos_attached": len(report.photos)},
            )
        if limited := citizen.passed_on_limit(request, answer):
            return limited
        report.errors.update(intake_refusal(answer))
        return await citizen.show_form(request, report, 422)

    def _sent(answer: Answer, city: City) -> Response:
        target = f"{city.base}/reports/{answer.body['id']}/sent"
        if token := answer.body.get("reporter_token"):
            target += "?" + urlencode({"token": token})
        return RedirectResponse(target, status_code=303)

    @pages.get("/nearby.json")
    async def nearby(request: Request, service_code: str, lat: float, long: float) -> Response:
        """For the form's script: open reports of this kind close to the pin."""
        if service_code not in CATEGORIES_BY_CODE:
            return JSONResponse({"reports": []})
        found = await citizen.nearby(service_code, lat, long, language(request))
        return JSONResponse({"reports": found})

    @pages.get("/areas.geojson")
    async def areas(request: Request) -> Response:
        """The districts and Ortsteile, simplified: the maps' base layer and the city outline
        the form checks a pin against before sending."""
        return JSONResponse(
            await citizen.outlines(city_of(request)),
            media_type="application/geo+json",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    @pages.get("/reports/" + REPORT_ID + "/sent", response_class=HTMLResponse)
    async def sent(request: Request, report_id: uuid.UUID, token: str = "") -> Response:
        report = await _report(report_id, language(request))
        tracking = f"{settings.public_base_url}{city_of(request).base}/reports/{report_id}"
        mine = f"{tracking}?{urlencode({'token': token})}" if token else ""
        return render(
            request,
            "citizen/sent.html",
            {"report": report, "tracking_url": tracking, "reporter_url": mine},
        )

    # -- one report -----------------------------------------------------------------------------

    async def _report(report_id: uuid.UUID, lang: Lang) -> dict[str, Any]:
        answer = await services.call(
            "intake", "GET", f"/api/v1/reports/{report_id}", headers={"Accept": "application/json"}
        )
        if answer.status == 404 or not answer.ok:
            raise HTTPException(status_code=404)
        body = dict(answer.body)
        status = ReportStatus(body["status"])
        history = [
            {
                "status": h["status"],
                "label": STATUS_LABELS[lang][ReportStatus(h["status"])],
                "when": citizen.when(h.get("at"), lang),
                "at": h.get("at"),
                "note": h.get("note"),
            }
            for h in body.get("history", [])
        ]
        resolved_at = next((h["at"] for h in reversed(history) if h["status"] == "resolved"), None)
        reopen_until = None
        if status is ReportStatus.RESOLVED and resolved_at:
            reopen_until = datetime.fromisoformat(resolved_at) + timedelta(
                days=settings.reopen_within_days
            )
        return body | {
            "category": citizen.category_name(body["service_code"], lang),
            "status_label": STATUS_LABELS[lang][status],
            "when": citizen.when(body.get("requested_at"), lang),
            "history": history,
            "photos": [_photo_paths(p) for p in body.get("photos", [])],
            "reopenable": reopen_until is not None and reopen_until > datetime.now(UTC),
            "reopen_until": citizen.when(reopen_until.isoformat(), lang) if reopen_until else "",
        }

    @pages.get("/reports/" + REPORT_ID, response_class=HTMLResponse)
    async def report_page(
        request: Request, report_id: uuid.UUID, token: str = "", done: str = ""
    ) -> Response:
        """The page behind the link in every mail; with the reporter's token (only in their
        mail) it offers their actions."""
        report = await _report(report_id, language(request))
        # The link in the mails has no city's prefix: a report is shown as its city's.
        home = (await cities.known()).get(str(report.get("jurisdiction") or ""))
        city = city_of(request)
        if home is not None and home.code != city.code and not city.base:
            # At / is another city (the default, or the one of this host name): the report's
            # own is under its prefix.
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(f"/{home.code}/reports/{report_id}{query}", status_code=307)
        return render(
            request,
            "citizen/report.html",
            {"report": report, "token": token[:200], "done": done, "errors": {}},
            headers={"Cache-Control": "no-store"} if token else None,
        )

    @pages.post("/reports/" + REPORT_ID + "/follow", response_class=HTMLResponse)
    async def follow(request: Request, report_id: uuid.UUID) -> Response:
        """ "This is mine too": hear about that report instead of filing a new one."""
        lang = language(request)
        form = await citizen.read_form(request)
        email = str(form.get("email", "")).strip()
        name = str(form.get("name", "")).strip()[:200]
        report = await _report(report_id, lang)
        if not email or not EMAIL.match(email):
            errors = {"email": "follow.error.email"} if form.get("asked") == "1" or email else {}
            return render(
                request,
                "citizen/follow.html",
                {"report": report, "email": email, "name": name, "errors": errors},
                status_code=422 if errors else 200,
            )
        if refused := citizen.refused_by_limit(request, email):
            return refused
        body = {"email": email, "locale": lang} | ({"first_name": name} if name else {})
        answer = await services.call(
            "intake",
            "POST",
            f"/api/v1/reports/{report_id}/followers",
            json=body,
            headers=citizen.forwarded(request),
        )
        if answer.status == 404:
            raise HTTPException(status_code=404)
        if limited := citizen.passed_on_limit(request, answer):
            return limited
        if not answer.ok:
            errors = {"email": "follow.error.email"}
            return render(
                request,
                "citizen/follow.html",
                {"report": report, "email": email, "name": name, "errors": errors},
                status_code=422,
            )
        return render(request, "citizen/followed.html", {"report": report})

    def _back(request: Request, report_id: uuid.UUID, token: str, done: str) -> Response:
        query = urlencode({"token": token, "done": done})
        base = city_of(request).base
        return RedirectResponse(f"{base}/reports/{report_id}?{query}#outcome", status_code=303)

    @pages.post("/reports/" + REPORT_ID + "/not-fixed", response_class=HTMLResponse)
    async def not_fixed(request: Request, report_id: uuid.UUID) -> Response:
        """The reporter says a resolved report is not fixed: intake reopens it."""
        lang = language(request)
        form = await citizen.read_form(request, max_files=2)
        token = str(form.get("token", ""))[:200]
        note = str(form.get("note", "")).strip()
        errors: dict[str, str] = {}
        if not note:
            errors["note"] = "report.error.note"
        elif len(note) > 4000:
            errors["note"] = "form.error.description_long"
        photo = form.get("photo")
        files = []
        if photo is not None and not isinstance(photo, str) and photo.filename:
            content = await photo.read(MAX_PHOTO_BYTES + 1)
            if len(content) > MAX_PHOTO_BYTES:
                errors["photo"] = "form.error.photo_large"
            elif content:
                files.append(("photos", (photo.filename, content, photo.content_type or "")))
        if errors:
            report = await _report(report_id, lang)
            context = {"report": report, "token": token, "done": "", "errors": errors, "note": note}
            # The language switch leads to the report page, as on any answer to a POST, and
            # keeps the reporter's token.
            token_query = f"?{urlencode({'token': token})}" if token else ""
            context["here"] = switchable_address(request) + token_query
            return render(request, "citizen/report.html", context, status_code=422)
        if refused := citizen.refused_by_limit(request):
            return refused
        answer = await services.call(
            "intake",
            "POST",
            f"/api/v1/reports/{report_id}/not-fixed",
            data={"reporter_token": token, "note": note},
            files=files or None,
            headers=citizen.forwarded(request),
        )
        if limited := citizen.passed_on_limit(request, answer):
            return limited
        return _back(request, report_id, token, _outcome(answer, "reopened"))

    async def _erase_question(request: Request, report_id: uuid.UUID, token: str) -> Response:
        """Whether to delete, what goes and that it cannot be undone. Its address, also for
        the language switch, is the GET one: the question in the other language."""
        report = await _report(report_id, language(request))
        here = f"{quote(request.url.path)}?{urlencode({'token': token})}"
        return render(
            request,
            "citizen/erase_confirm.html",
            {"report": report, "token": token, "here": here},
            headers={"Cache-Control": "no-store"},
        )

    @pages.get("/reports/" + REPORT_ID + "/erase-contact", response_class=HTMLResponse)
    async def erase_question(request: Request, report_id: uuid.UUID, token: str = "") -> Response:
        return await _erase_question(request, report_id, token[:200])

    @pages.post("/reports/" + REPORT_ID + "/erase-contact", response_class=HTMLResponse)
    async def erase_contact(request: Request, report_id: uuid.UUID) -> Response:
        """GDPR Art. 17: intake forgets the copy of the reporter's address it keeps for
        re-announcing, then the notifier forgets theirs; the report stays. Nothing brings the
        address back, so the report page's button only asks first (a page of its own, no
        script needed); the answer to that page, with ``confirm=yes``, erases."""
        form = await citizen.read_form(request)
        token = str(form.get("token", ""))[:200]
        if form.get("confirm") != "yes":
            return await _erase_question(request, report_id, token)
        if refused := citizen.refused_by_limit(request):
            return refused
        kept = await services.call(
            "intake",
            "POST",
            f"/api/v1/reports/{report_id}/contact/erase",
            json={"reporter_token": token},
            headers=citizen.forwarded(request),
        )
        if not kept.ok:
            return _back(request, report_id, token, _outcome(kept, "erased"))
        answer = await services.call(
            "notifier",
            "POST",
            f"/api/v1/reports/{report_id}/contact/erase",
            json={"reporter_token": token},
            headers=citizen.forwarded(request),
        )
        return _back(request, report_id, token, _outcome(answer, "erased"))

    def _outcome(answer: Answer, success: str) -> str:
        if answer.ok:
            return success
        if answer.status == 403:
            return "invalid_token"
        if answer.status == 404 and success == "erased":
            return "nothing_to_erase"
        codes = answer.error_codes()
        for code in ("not_resolved", "reopen_period_over"):
            if code in codes:
                return code
        return "failed"

    @pages.get("/photos/{digest}/{variant}")
    async def photo(digest: str, variant: str) -> Response:
        """Intake's photos, from web's own address (pages load nothing from elsewhere)."""
        if not DIGEST.match(digest) or variant not in ("original", "display", "thumbnail"):
            raise HTTPException(status_code=404)
        answer = await services.raw("intake", f"/api/v1/photos/{digest}/{variant}")
        if answer.status_code != 200:
            raise HTTPException(status_code=404)
        return Response(
            answer.content,
            media_type=answer.headers.get("content-type"),
            # Intake's: immutable, but briefly cacheable while the original stands in for a
            # display size or thumbnail not made yet.
            headers={"Cache-Control": answer.headers.get("cache-control", "public, max-age=60")},
        )

    # -- the map of reports ---------------------------------------------------------------------

    @pages.get("/reports", response_class=HTMLResponse)
    async def reports(
        request: Request, service_code: str = "", status: str = "open", page: str = "1"
    ) -> Response:
        """Open and recently closed reports: a map (JavaScript) and, for everyone, a paged list."""
        lang = language(request)
        city = city_of(request)
        status = status if status in ("open", "recent", "closed", "all") else "open"
        service_code = service_code if service_code in CATEGORIES_BY_CODE else ""
        found = await citizen.public_list(lang, status=status, service_code=service_code, city=city)
        pages_total = max(1, math.ceil(len(found) / PAGE_SIZE))
        # A cut-off or mistyped link ("page=2x") shows the first page, not an error.
        page_number = min(max(1, whole_number(page) or 1), pages_total)
        shown = found[(page_number - 1) * PAGE_SIZE : page_number * PAGE_SIZE]

        def page_url(n: int) -> str:
            query = {"service_code": service_code, "status": status, "page": n}
            return f"{city.base}/reports?" + urlencode({k: v for k, v in query.items() if v})

        return render(
            request,
            "citizen/reports.html",
            {
                "groups": category_groups(lang, city.disabled_service_codes),
                "service_code": service_code,
                "status": status,
                "reports": shown,
                "total": len(found),
                "page": page_number,
                "pages_total": pages_total,
                "previous_url": page_url(page_number - 1) if page_number > 1 else "",
                "next_url": page_url(page_number + 1) if page_number < pages_total else "",
                "first_number": (page_number - 1) * PAGE_SIZE + 1,
            },
        )

    @pages.get("/reports.geojson")
    async def reports_geojson(
        request: Request, service_code: str = "", status: str = "open"
    ) -> Response:
        """The map's markers: the same list as the page, as GeoJSON."""
        lang = language(request)
        status = status if status in ("open", "recent", "closed", "all") else "open"
        service_code = service_code if service_code in CATEGORIES_BY_CODE else ""
        found = await citizen.public_list(
            lang, status=status, service_code=service_code, city=city_of(request)
        )
        features = [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [r["long"], r["lat"]]},
                "properties": {
                    k: r[k] for k in ("id", "category", "status", "status_label", "when")
                },
            }
            for r in found
        ]
        return JSONResponse(
            {"type": "FeatureCollection", "features": features}, media_type="application/geo+json"
        )

    # -- area alerts and feeds ------------------------------------------------------------------

    async def _alerts_page(
        request: Request, values: dict[str, str], errors: dict[str, str], status_code: int = 200
    ) -> Response:
        lang = language(request)
        city = city_of(request)
        return render(
            request,
            "citizen/alerts.html",
            {
                "levels": geography.by_level(await services.areas(jurisdiction=city.code)),
                "groups": category_groups(lang, city.disabled_service_codes),
                "values": values,
                "errors": errors,
                "categories": [
                    (c.code, c.name(lang))
                    for c in CATEGORIES
                    if c.code not in city.disabled_service_codes
                ],
                "radii": (100, 250, 500, 1000),
                "example": await citizen.example_place(city),
            },
            status_code=status_code,
        )

    @pages.get("/alerts", response_class=HTMLResponse)
    async def alerts(request: Request) -> Response:
        values = _values(request, "area", "lat", "long") | {"kind": "area", "radius_m": "250"}
        return await _alerts_page(request, values, {})

    @pages.post("/alerts", response_class=HTMLResponse)
    async def subscribe(request: Request) -> Response:
        """An e-mail subscription to new reports in an area or around a point (double opt-in:
        the notifier mails a confirmation link first)."""
        lang = language(request)
        form = await citizen.read_form(request)
        names = ("email", "kind", "area", "lat", "long", "radius_m", "service_code", HONEYPOT)
        values = {n: str(form.get(n, "")).strip()[:200] for n in names}
        errors: dict[str, str] = {}
        if not EMAIL.match(values["email"]):
            errors["email"] = "form.error.email"
        if values[HONEYPOT]:
            errors["form"] = "form.error.honeypot"
        city = city_of(request)
        levels = geography.by_level(await services.areas(jurisdiction=city.code))
        known_areas = {area["code"] for _, listed in levels for area in listed}
        body: dict[str, Any] = {
            "email": values["email"],
            "locale": lang,
            "service_code": values["service_code"]
            if values["service_code"] in CATEGORIES_BY_CODE
            else None,
            "area": None,
            "point": None,
            "jurisdiction": city.code,
        }
        if values["kind"] == "point":
            report = ReportForm(values={"lat": values["lat"], "long": values["long"]})
            point = report.coordinates()
            radius = whole_number(values["radius_m"]) or 0
            if point is None:
                errors["point"] = "form.error.place"
            elif not 50 <= radius <= 5000:
                errors["radius_m"] = "alerts.error.radius"
            else:
                body["point"] = {"lat": point[0], "long": point[1], "radius_m": radius}
        elif values["area"] in known_areas:
            body["area"] = {"code": values["area"]}
        else:
            errors["area"] = "alerts.error.area"
        if errors:
            return await _alerts_page(request, values, errors, 422)
        if refused := citizen.refused_by_limit(request, values["email"]):
            return refused
        answer = await services.call(
            "notifier", "POST", "/api/v1/alerts", json=body, headers=citizen.forwarded(request)
        )
        if limited := citizen.passed_on_limit(request, answer):
            return limited
        if answer.status == 422:
            fields = (
                {str(e.get("field") or "") for e in answer.body.get("errors", [])}
                if isinstance(answer.body, dict)
                else set()
            )
            errors = {"email": "form.error.email"} if any("email" in f for f in fields) else {}
            return await _alerts_page(
                request, values, errors or {"form": "form.error.refused"}, 422
            )
        if not answer.ok:
            raise ServiceUnavailable("notifier")
        return render(request, "citizen/alert_sent.html", {"email": values["email"]})

    @pages.get("/feeds/areas/{code}.atom")
    async def area_feed(request: Request, code: str) -> Response:
        """New reports in an area of the city (an Ortsteil, a Stadtbezirk), as an Atom feed."""
        areas = (await services.areas(jurisdiction=city_of(request).code))["features"]
        area = next((f for f in areas if f["properties"]["code"] == code), None)
        if area is None:
            raise HTTPException(status_code=404)
        lang = language(request)
        found = await citizen.public_list(lang, status="all", area=area, limit=200)
        title = area["properties"]["name"]
        return _feed(request, f"/feeds/areas/{code}.atom", title, found[:50])

    @pages.get("/feeds/categories/{code}.atom")
    async def category_feed(request: Request, code: str) -> Response:
        """New reports of one category in the whole city, as an Atom feed."""
        if code not in CATEGORIES_BY_CODE:
            raise HTTPException(status_code=404)
        lang = language(request)
        found = await citizen.public_list(
            lang, status="all", service_code=code, limit=200, city=city_of(request)
        )
        return _feed(
            request, f"/feeds/categories/{code}.atom", citizen.category_name(code, lang), found[:50]
        )

    def _feed(request: Request, path: str, title: str, entries: list[dict[str, Any]]) -> Response:
        updated = max((e["updated_at"] or e["requested_at"] or "" for e in entries), default="")
        base = settings.public_base_url + city_of(request).base
        response = render(
            request,
            "citizen/feed.atom.xml",
            {
                "feed_url": base + path,
                "base": base,
                "title": title,
                "entries": entries,
                "updated": updated or datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        response.headers["content-type"] = "application/atom+xml; charset=utf-8"
        return response

    return pages


def _as_feature(report: dict[str, Any]) -> dict[str, Any]:
    """A report of intake's 409 answer in the shape of its public list's features."""
    office = report.get("office") or {}
    return {
        "id": report["id"],
        "geometry": {"type": "Point", "coordinates": [report["long"], report["lat"]]},
        "properties": report | {"office": office},
    }


def _photo_paths(photo: dict[str, str]) -> dict[str, str]:
    """Intake's photo links as web's own addresses (``/photos/<digest>/<variant>``)."""
    digest = photo["url"].rstrip("/").split("/")[-2]
    return {
        variant: f"/photos/{digest}/{variant}" for variant in ("thumbnail", "display", "original")
    }
