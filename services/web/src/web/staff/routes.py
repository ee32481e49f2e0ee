"""The staff console under /staff/: sign-in (token or the city's IdP), the queue with its map,
one ticket and its actions, bulk actions, canned responses, statistics and the CSV export.
Every page is a client of intake's staff API with the member's own credential, so intake's
rules (offices, transitions) hold here exactly as in the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.datastructures import FormData

from web import csrf, geography
from web.adapters.services import Answer, Services, ServiceUnavailable
from web.i18n import language
from web.staff import session as sessions
from web.staff import views
from web.staff.oidc import OidcClient, SignInFailed
from web.staff.session import StaffSession
from web.templating import render

#: Tickets on the console's map at most (the list pages through all).
MAP_LIMIT = 1000


class SignInRequired(Exception):
    """No session, an expired one, or a credential intake no longer accepts."""

    def __init__(self, next_path: str, expired: bool = False) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.expired = expired


class NotFound(Exception):
    """Not a ticket of the member's offices (or none at all): the 404 page."""


def router(services: Services, oidc: OidcClient | None) -> APIRouter:
    pages = APIRouter(prefix="/staff")
    outlines = geography.PerAnswer(geography.simplified)

    def here(request: Request) -> str:
        query = f"?{request.url.query}" if request.url.query else ""
        return request.url.path + query

    def signed_in(request: Request) -> StaffSession:
        found = sessions.read(request)
        if found is None:
            raise SignInRequired(here(request), expired=sessions.COOKIE in request.cookies)
        return found

    async def intake(
        member: StaffSession,
        request: Request,
        method: str,
        path: str,
        **kwargs: Any,
    ) -> Answer:
        answer = await services.call(
            "intake", method, f"/api/v1/staff{path}", headers=member.auth, **kwargs
        )
        if answer.status == 401:
            raise SignInRequired(here(request), expired=True)
        return answer

    def page(
        request: Request,
        member: StaffSession,
        template: str,
        context: dict[str, Any],
        *,
        status_code: int = 200,
    ) -> Response:
        """A console page; the session's cookie is renewed (the idle timeout starts again)."""
        response = render(
            request,
            template,
            {"member": member, "views": views, **context},
            status_code=status_code,
        )
        sessions.write(response, request.app.state.settings, member)
        return response

    async def form_of(request: Request) -> FormData:
        form = await request.form(max_files=0, max_fields=500)
        csrf.verify(request, form)
        return form

    def back_to(path: str, **flash: str) -> RedirectResponse:
        query = "&".join(f"{k}={quote(v)}" for k, v in flash.items())
        return RedirectResponse(f"{path}?{query}" if query else path, status_code=303)

    # Signing in and out.

    @pages.get("/")
    async def start(request: Request, next: str = "", expired: bool = False) -> Response:
        if sessions.read(request) is not None:
            return RedirectResponse("/staff/tickets", status_code=303)
        return render(
            request,
            "staff/sign_in.html",
            {"next": _local(next), "expired": expired, "oidc": oidc is not None, "error": None},
        )

    @pages.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        form = await form_of(request)
        credential = str(form.get("token", "")).strip()
        next_path = _local(str(form.get("next", "")))
        member = await _member(services, credential) if credential else None
        if member is None:
            return render(
                request,
                "staff/sign_in.html",
                {
                    "next": next_path,
                    "expired": False,
                    "oidc": oidc is not None,
                    "error": "staff.sign_in.empty" if not credential else "staff.sign_in.wrong",
                },
                status_code=422 if not credential else 401,
            )
        response = RedirectResponse(next_path or "/staff/tickets", status_code=303)
        sessions.write(response, request.app.state.settings, member)
        return response

    @pages.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        await form_of(request)
        response = RedirectResponse("/staff/?signed_out=1", status_code=303)
        sessions.clear(response, request.app.state.settings)
        return response

    @pages.get("/oidc/start")
    async def oidc_start(request: Request, next: str = "") -> Response:
        if oidc is None:
            raise NotFound
        started = await _provider(oidc.start())
        response = RedirectResponse(started.url, status_code=303)
        settings = request.app.state.settings
        response.set_cookie(
            sessions.LOGIN_COOKIE,
            sessions.seal(
                settings,
                sessions.LOGIN_COOKIE,
                {"state": started.state, "verifier": started.verifier, "next": _local(next)},
            ),
            max_age=600,
            path=sessions.PATH,
            httponly=True,
            samesite="lax",
            secure=settings.cookie_secure,
        )
        return response

    @pages.get("/oidc/callback")
    async def oidc_callback(request: Request, code: str = "", state: str = "") -> Response:
        if oidc is None:
            raise NotFound
        settings = request.app.state.settings
        login = sessions.unseal(
            settings, sessions.LOGIN_COOKIE, request.cookies.get(sessions.LOGIN_COOKIE), 600
        )
        member = None
        if isinstance(login, dict) and code and state == login.get("state"):
            access_token = await _provider(oidc.finish(code, str(login["verifier"])))
            member = await _member(services, access_token)
        if member is None:
            return render(
                request,
                "staff/sign_in.html",
                {"next": "", "expired": False, "oidc": True, "error": "staff.sign_in.oidc_failed"},
                status_code=401,
            )
        response = RedirectResponse(
            str(login.get("next") or "/staff/tickets") if isinstance(login, dict) else "/",
            status_code=303,
        )
        response.delete_cookie(sessions.LOGIN_COOKIE, path=sessions.PATH)
        sessions.write(response, settings, member)
        return response

    # The queue, its map and its export.

    @pages.get("/tickets")
    async def queue(request: Request) -> Response:
        member = signed_in(request)
        chosen = views.QueueFilter.from_query(request.query_params)
        answer, areas = await asyncio.gather(
            intake(
                member,
                request,
                "GET",
                "/tickets",
                params={
                    **chosen.api_params(),
                    "page": chosen.page,
                    "page_size": views.PAGE_SIZE,
                },
            ),
            _area_choices(services, member.jurisdiction),
        )
        if not answer.ok:
            return _refused_page(request, answer)
        body = answer.body
        pages_total = max(1, -(-body["total"] // views.PAGE_SIZE))
        return page(
            request,
            member,
            "staff/queue.html",
            {
                "filter": chosen,
                "tickets": body["items"],
                "total": body["total"],
                "counts": body["counts"],
                "all_count": sum(body["counts"].values()),
                "pages_total": pages_total,
                "areas": areas,
                "done": request.query_params.get("done", ""),
                "failed": request.query_params.get("failed", ""),
                "bulk_error": request.query_params.get("bulk_error", ""),
            },
        )

    @pages.get("/map")
    async def map_page(request: Request) -> Response:
        member = signed_in(request)
        chosen = views.QueueFilter.from_query(request.query_params)
        return page(
            request,
            member,
            "staff/map.html",
            {
                "filter": chosen,
                "areas": await _area_choices(services, member.jurisdiction),
                "limit": MAP_LIMIT,
            },
        )

    @pages.get("/map.geojson")
    async def map_data(request: Request) -> Response:
        member = signed_in(request)
        chosen = views.QueueFilter.from_query(request.query_params)
        answer = await intake(
            member,
            request,
            "GET",
            "/tickets",
            params={**chosen.api_params(), "page": 1, "page_size": MAP_LIMIT},
        )
        if not answer.ok:
            return JSONResponse(answer.body, status_code=answer.status)
        lang = language(request)
        features = [
            {
                "type": "Feature",
                "id": t["id"],
                "geometry": {"type": "Point", "coordinates": [t["long"], t["lat"]]},
                "properties": {
                    "url": f"/staff/tickets/{t['id']}",
                    "title": views.category_name(t["service_code"], lang),
                    "status": views.status_label(t["status"], lang),
                    "overdue": t["overdue"],
                },
            }
            for t in answer.body["items"]
        ]
        return JSONResponse(
            {"type": "FeatureCollection", "features": features, "total": answer.body["total"]}
        )

    @pages.get("/areas.geojson")
    async def area_outlines(request: Request) -> Response:
        member = signed_in(request)
        # The member's city's outline level (Leipzig's Stadtbezirke, Köln's Stadtteile),
        # simplified as for the citizens' maps.
        found = await services.areas(jurisdiction=member.jurisdiction)
        features = [
            f
            for f in outlines.of(member.jurisdiction, found)["features"]
            if f["properties"]["outline"]
        ]
        return JSONResponse({"type": "FeatureCollection", "features": features})

    @pages.get("/tickets.csv")
    async def export(request: Request) -> Response:
        member = signed_in(request)
        chosen = views.QueueFilter.from_query(request.query_params)
        client = services.clients["intake"]
        upstream = client.build_request(
            "GET",
            "/api/v1/staff/tickets.csv",
            params=chosen.api_params(),
            headers=member.auth,
        )
        try:
            answer = await client.send(upstream, stream=True)
        except httpx.TransportError as exc:
            raise ServiceUnavailable("intake") from exc
        if answer.status_code == 401:
            await answer.aclose()
            raise SignInRequired(here(request), expired=True)

        async def passed_on() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.aiter_raw():
                    yield chunk
            finally:
                await answer.aclose()

        headers = {
            k: v
            for k, v in answer.headers.items()
            if k.lower() in ("content-type", "content-disposition")
        }
        return StreamingResponse(passed_on(), status_code=answer.status_code, headers=headers)

    @pages.post("/tickets/bulk")
    async def bulk(request: Request) -> Response:
        member = signed_in(request)
        form = await form_of(request)
        back = _local(str(form.get("back", ""))) or "/staff/tickets"
        chosen = [i for i in form.getlist("ids") if isinstance(i, str) and _is_uuid(i)]
        action = str(form.get("action", ""))
        note = str(form.get("public_note", "")).strip()
        separator = "&" if "?" in back else "?"
        if not chosen or action not in ("in_progress", "resolved"):
            problem = "none_selected" if not chosen else "no_action"
            return RedirectResponse(f"{back}{separator}bulk_error={problem}", status_code=303)
        if action == "resolved" and not note:
            return RedirectResponse(f"{back}{separator}bulk_error=note_required", status_code=303)
        body = {"status": action, **({"public_note": note} if note else {})}
        answers = await asyncio.gather(
            *(
                intake(member, request, "POST", f"/tickets/{i}/transitions", json=body)
                for i in chosen
            )
        )
        done = sum(a.ok for a in answers)
        return RedirectResponse(
            f"{back}{separator}done={done}&failed={len(answers) - done}", status_code=303
        )

    # One ticket.

    async def ticket_page(
        request: Request,
        member: StaffSession,
        ticket_id: UUID,
        *,
        errors: dict[str, str] | None = None,
        entered: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> Response:
        answer = await intake(member, request, "GET", f"/tickets/{ticket_id}")
        if answer.status == 404:
            raise NotFound
        if not answer.ok:
            return _refused_page(request, answer)
        ticket = answer.body
        nearby, offices, canned, route = await asyncio.gather(
            intake(member, request, "GET", f"/tickets/{ticket_id}/nearby"),
            intake(member, request, "GET", "/offices"),
            intake(member, request, "GET", "/canned-responses"),
            services.call(
                "geo_router",
                "GET",
                "/v1/route",
                params={
                    "lat": ticket["lat"],
                    "long": ticket["long"],
                    "service_code": ticket["service_code"],
                },
            ),
        )
        mine = set(member.office_codes())
        return page(
            request,
            member,
            "staff/ticket.html",
            {
                "ticket": ticket,
                "nearby": nearby.body if nearby.ok else [],
                "offices": offices.body if offices.ok else [],
                "canned": [
                    c
                    for c in (canned.body if canned.ok else [])
                    if member.admin or c["office_code"] in mine
                ],
                "route": route.body if route.ok else None,
                "errors": errors or {},
                "entered": entered or {},
                "done": request.query_params.get("done", ""),
            },
            status_code=status_code,
        )

    @pages.get("/tickets/{ticket_id}")
    async def ticket(request: Request, ticket_id: UUID) -> Response:
        return await ticket_page(request, signed_in(request), ticket_id)

    @pages.post("/tickets/{ticket_id}/work")
    async def work(request: Request, ticket_id: UUID) -> Response:
        """A status change or a note, with public and internal notes (a canned response
        chosen without JavaScript fills an empty public note)."""
        member = signed_in(request)
        form = await form_of(request)
        action = str(form.get("action", ""))
        public_note = str(form.get("public_note", "")).strip()
        internal_note = str(form.get("internal_note", "")).strip()
        entered = {"action": action, "public_note": public_note, "internal_note": internal_note}
        if not public_note and form.get("canned"):
            public_note = await _canned_text(member, request, str(form.get("canned")))
            entered["public_note"] = public_note
        errors: dict[str, str] = {}
        if action not in views.ACTIONS:
            errors["action"] = "staff.error.choose_action"
        elif action == "rejected" and not public_note:
            errors["public_note"] = "staff.error.reason_required"
        elif action == "note" and not (public_note or internal_note):
            errors["public_note"] = "staff.error.note_required"
        if errors:
            return await ticket_page(
                request, member, ticket_id, errors=errors, entered=entered, status_code=422
            )
        notes = {
            **({"public_note": public_note} if public_note else {}),
            **({"internal_note": internal_note} if internal_note else {}),
        }
        if action == "note":
            answer = await intake(
                member, request, "POST", f"/tickets/{ticket_id}/notes", json=notes
            )
        else:
            answer = await intake(
                member,
                request,
                "POST",
                f"/tickets/{ticket_id}/transitions",
                json={"status": action, **notes},
            )
        return await _after(request, member, ticket_id, answer, action, entered, "action")

    @pages.post("/tickets/{ticket_id}/duplicate")
    async def duplicate(request: Request, ticket_id: UUID) -> Response:
        member = signed_in(request)
        form = await form_of(request)
        original = str(form.get("duplicate_of", "")).strip()
        return await _transition(
            request,
            member,
            ticket_id,
            {"status": "duplicate", "duplicate_of": original} if _is_uuid(original) else None,
            entered={"duplicate_of": original},
            field="duplicate_of",
            missing="staff.error.duplicate_id",
            done="duplicate",
        )

    @pages.post("/tickets/{ticket_id}/reassign")
    async def reassign(request: Request, ticket_id: UUID) -> Response:
        member = signed_in(request)
        form = await form_of(request)
        office = str(form.get("office_code", "")).strip()
        reason = str(form.get("reason", "")).strip()
        return await _transition(
            request,
            member,
            ticket_id,
            {"status": "assigned", "office_code": office, "internal_note": reason or None}
            if office
            else None,
            entered={"office_code": office, "reason": reason},
            field="office_code",
            missing="staff.error.choose_office",
            done="reassigned",
        )

    async def _transition(
        request: Request,
        member: StaffSession,
        ticket_id: UUID,
        body: dict[str, Any] | None,
        *,
        entered: dict[str, str],
        field: str,
        missing: str,
        done: str,
    ) -> Response:
        """A transition a form asked for; ``body`` None: the form lacks ``field``."""
        if body is None:
            return await ticket_page(
                request,
                member,
                ticket_id,
                errors={field: missing},
                entered=entered,
                status_code=422,
            )
        answer = await intake(
            member, request, "POST", f"/tickets/{ticket_id}/transitions", json=body
        )
        return await _after(request, member, ticket_id, answer, done, entered, field)

    async def _after(
        request: Request,
        member: StaffSession,
        ticket_id: UUID,
        answer: Answer,
        done: str,
        entered: dict[str, str],
        field: str,
    ) -> Response:
        """Back to the ticket with what happened, or the form again with intake's reason."""
        if answer.status == 404:
            raise NotFound
        if answer.ok:
            if answer.status == 202:  # handed to another office: no longer ours to show
                return back_to("/staff/tickets", done="1", failed="0")
            return back_to(f"/staff/tickets/{ticket_id}", done=done)
        messages = (
            [e.get("message", "") for e in answer.body.get("errors", []) if isinstance(e, dict)]
            if isinstance(answer.body, dict)
            else []
        )
        code = answer.error_codes()[0] if answer.error_codes() else "refused"
        key = {
            "transition_not_allowed": "staff.error.not_allowed",
            "invalid_transition": "staff.error.invalid",
        }.get(code, "staff.error.invalid")
        return await ticket_page(
            request,
            member,
            ticket_id,
            errors={field: key, "detail": "; ".join(messages)},
            entered=entered,
            status_code=answer.status if answer.status in (409, 422) else 400,
        )

    async def _canned_text(member: StaffSession, request: Request, chosen: str) -> str:
        answer = await intake(member, request, "GET", "/canned-responses")
        for c in answer.body if answer.ok else []:
            if str(c["id"]) == chosen:
                return str(c["body"])
        return ""

    @pages.get("/photos/{digest}/{variant}")
    async def photo(request: Request, digest: str, variant: str) -> Response:
        signed_in(request)
        if variant not in ("original", "display", "thumbnail") or not digest.isalnum():
            raise NotFound
        answer = await services.raw("intake", f"/api/v1/photos/{digest}/{variant}")
        if answer.status_code != 200:
            raise NotFound
        return Response(
            answer.content,
            media_type=answer.headers.get("content-type", "image/jpeg"),
            # Briefly while intake's original stands in for a variant not made yet.
            headers={
                "Cache-Control": "private, max-age=86400"
                if "immutable" in answer.headers.get("cache-control", "")
                else "private, max-age=60"
            },
        )

    # Canned responses.

    async def canned_page(
        request: Request,
        member: StaffSession,
        *,
        errors: dict[str, str] | None = None,
        entered: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> Response:
        answer = await intake(member, request, "GET", "/canned-responses")
        return page(
            request,
            member,
            "staff/canned.html",
            {
                "responses": answer.body if answer.ok else [],
                "errors": errors or {},
                "entered": entered or {},
                "done": request.query_params.get("done", ""),
            },
            status_code=status_code,
        )

    @pages.get("/canned-responses")
    async def canned_list(request: Request) -> Response:
        return await canned_page(request, signed_in(request))

    @pages.post("/canned-responses")
    async def canned_add(request: Request) -> Response:
        return await _keep(request, None)

    @pages.post("/canned-responses/{response_id}")
    async def canned_change(request: Request, response_id: int) -> Response:
        return await _keep(request, response_id)

    @pages.post("/canned-responses/{response_id}/delete")
    async def canned_delete(request: Request, response_id: int) -> Response:
        member = signed_in(request)
        await form_of(request)
        answer = await intake(member, request, "DELETE", f"/canned-responses/{response_id}")
        if answer.status == 404:
            raise NotFound
        return back_to("/staff/canned-responses", done="deleted")

    async def _keep(request: Request, response_id: int | None) -> Response:
        member = signed_in(request)
        form = await form_of(request)
        entered = {
            "office_code": str(form.get("office_code", "")),
            "title": str(form.get("title", "")).strip(),
            "body": str(form.get("body", "")).strip(),
            "id": str(response_id or ""),
        }
        errors = {k: f"staff.error.{k}_required" for k in ("title", "body") if not entered[k]}
        if not errors:
            payload = {k: entered[k] for k in ("office_code", "title", "body")}
            if response_id is None:
                answer = await intake(member, request, "POST", "/canned-responses", json=payload)
            else:
                answer = await intake(
                    member, request, "PUT", f"/canned-responses/{response_id}", json=payload
                )
            if answer.status == 404:
                raise NotFound
            if answer.ok:
                return back_to("/staff/canned-responses", done="saved")
            code = (answer.error_codes() or ["invalid"])[0]
            errors = {
                "title": "staff.error.title_taken"
                if code == "title_taken"
                else "staff.error.invalid"
            }
        return await canned_page(request, member, errors=errors, entered=entered, status_code=422)

    # Statistics.

    @pages.get("/statistics")
    async def statistics(request: Request) -> Response:
        member = signed_in(request)
        lang = language(request)
        params: dict[str, str] = {}
        errors: dict[str, str] = {}
        for name in ("from", "to"):
            value = request.query_params.get(name, "")
            if value:
                try:
                    params[name] = date.fromisoformat(value).isoformat()
                except ValueError:
                    errors[name] = "staff.error.date"
        office = request.query_params.get("office", "")
        if office:
            params["office"] = office
        answer = await intake(member, request, "GET", "/statistics", params=params)
        if not answer.ok:
            errors["to" if answer.status == 422 else "office"] = "staff.error.invalid"
            answer = await intake(member, request, "GET", "/statistics")
        stats = answer.body
        per_bezirk = [
            (a["name"], a["count"]) for a in stats["per_area"] if a["level"] == "stadtbezirk"
        ]
        per_ortsteil = [
            (a["name"], a["count"]) for a in stats["per_area"] if a["level"] == "ortsteil"
        ]
        per_category = [
            (views.category_name(c["service_code"], lang), c["count"])
            for c in stats["per_category"]
        ]
        per_month = [(m["month"], m["count"]) for m in stats["per_month"]]
        return page(
            request,
            member,
            "staff/statistics.html",
            {
                "stats": stats,
                "chosen": {
                    "from": request.query_params.get("from", ""),
                    "to": request.query_params.get("to", ""),
                    "office": office,
                },
                "errors": errors,
                "by_category": views.horizontal_chart(per_category),
                "category_rows": per_category,
                "by_bezirk": views.horizontal_chart(per_bezirk),
                "bezirk_rows": per_bezirk,
                "ortsteile": per_ortsteil,
                "by_month": views.vertical_chart(per_month),
                "month_rows": per_month,
                "to_assignment": views.hours(stats["median_hours_to_assignment"], lang),
                "to_closing": views.hours(stats["median_hours_to_closing"], lang),
            },
        )

    return pages


async def _member(services: Services, credential: str) -> StaffSession | None:
    """Who a credential belongs to, as intake says (``/api/v1/staff/me``)."""
    if not _header_safe(credential):
        # Not a token any issuer hands out; in a header it would not even encode (a 500).
        return None
    answer = await services.call(
        "intake", "GET", "/api/v1/staff/me", headers={"Authorization": f"Bearer {credential}"}
    )
    if not answer.ok or not isinstance(answer.body, dict):
        return None
    return StaffSession(
        credential=credential,
        name=str(answer.body["name"]),
        offices=[(o["code"], o.get("name") or o["code"]) for o in answer.body["offices"]],
        admin=bool(answer.body["admin"]),
        jurisdiction=str(answer.body["jurisdiction"]) if answer.body.get("jurisdiction") else None,
    )


async def _provider(step: Any) -> Any:
    try:
        return await step
    except SignInFailed as failed:
        raise ServiceUnavailable("intake") from failed


async def _area_choices(
    services: Services, jurisdiction: str | None
) -> list[tuple[str, list[dict[str, str]]]]:
    """The member's city's areas for the filter (names are what intake matches); the queue
    and its map work without them while geo-router is away."""
    try:
        return geography.by_level(await services.areas(jurisdiction=jurisdiction))
    except ServiceUnavailable:
        return []


def _refused_page(request: Request, answer: Answer) -> Response:
    status = answer.status if answer.status in (400, 403, 404) else 400
    return render(
        request, "error.html", {"status": status if status != 403 else 404}, status_code=status
    )


#: Longer than any staff token or access token intake accepts.
MAX_CREDENTIAL = 8192


def _header_safe(credential: str) -> bool:
    """Printable ASCII without spaces (RFC 6750's token68 and more): fit for a Bearer header."""
    return (
        len(credential) <= MAX_CREDENTIAL
        and credential.isascii()
        and credential.isprintable()
        and " " not in credential
    )


def _local(path: str) -> str:
    """Only a path on this site (no open redirect)."""
    return path if path.startswith("/staff") and not path.startswith("//") else ""


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True
