"""Web's own rules, in process, with the services answered by a stand-in transport: CSRF, the
honeypot, limits, bounded sizes, the forwarded client address, languages, the geocoder, the
outlines it serves."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from web import geography
from web.bootstrap import create_app
from web.i18n import negotiate
from web.ratelimit import SlidingWindow
from web.settings import WebSettings

SQUARE = {
    "type": "Feature",
    "properties": {"level": "stadtbezirk", "code": "0", "name": "Mitte"},
    "geometry": {
        "type": "Polygon",
        "coordinates": [[[12.3, 51.3], [12.4, 51.3], [12.4, 51.4], [12.3, 51.4], [12.3, 51.3]]],
    },
}


#: A Stadtteil of Köln (around the Dom) as geo-router lists it: Köln has one level.
KOELN_SQUARE = {
    "type": "Feature",
    "properties": {"level": "stadtteil", "code": "101", "name": "Altstadt/Süd"},
    "geometry": {
        "type": "Polygon",
        "coordinates": [[[6.9, 50.9], [7.0, 50.9], [7.0, 51.0], [6.9, 51.0], [6.9, 50.9]]],
    },
}
CITIES = [
    {
        "code": "koeln",
        "name": "Stadt Köln",
        "bbox": [6.77, 50.83, 7.16, 51.08],
        "disabled_service_codes": ["011"],
    },
    {"code": "leipzig", "name": "Stadt Leipzig", "bbox": [12.23, 51.23, 12.54, 51.45]},
]


class FakeServices:
    """Answers web's calls like intake, geo-router and the notifier; keeps what it was sent."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.submit_status = 201
        self.submit_headers: dict[str, str] = {}
        #: Intake's answer to GET /api/v1/jurisdictions; None: an intake without it (404).
        self.jurisdictions: list[dict[str, Any]] | None = None
        #: Reports intake answers GET /api/v1/reports/<id> with, by id.
        self.reports: dict[str, dict[str, Any]] = {}
        #: Intake's answer to GET /api/v1/staff/me; None: no such member.
        self.member: dict[str, Any] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.url.host == "geocoder":
            found = [{"lat": "51.35", "lon": "12.35"}] if "Markt" in request.url.params["q"] else []
            return httpx.Response(200, json=found)
        if path == "/v1/areas":
            features = [KOELN_SQUARE if request.url.params["jurisdiction"] == "koeln" else SQUARE]
            return httpx.Response(200, json={"type": "FeatureCollection", "features": features})
        if path.endswith("/contact/erase") and request.method == "POST":
            return httpx.Response(204)
        if path.startswith("/api/v1/reports/") and path.rsplit("/", 1)[1] in self.reports:
            return httpx.Response(200, json=self.reports[path.rsplit("/", 1)[1]])
        if path == "/api/v1/staff/me" and self.member is not None:
            return httpx.Response(200, json=self.member)
        if path.startswith("/api/v1/staff/"):
            return httpx.Response(200, json=[])
        if path.startswith("/api/v1/photos/"):
            # Intake's original is final; its display size here still a stand-in (not made).
            final = path.endswith("/original")
            cache = "public, max-age=31536000, immutable" if final else "public, max-age=60"
            return httpx.Response(
                200,
                content=b"\xff\xd8",
                headers={"content-type": "image/jpeg", "cache-control": cache},
            )
        if path == "/api/v1/jurisdictions" and self.jurisdictions is not None:
            return httpx.Response(200, json={"jurisdictions": self.jurisdictions})
        if path == "/api/v1/alerts" and request.method == "POST":
            return httpx.Response(202, json={"status": "confirmation_sent"})
        if path == "/open311/v2/services.json":
            return httpx.Response(200, json=[{"service_code": "001", "metadata": False}])
        if path == "/api/v1/reports" and request.method == "POST":
            if self.submit_status != 201:
                return httpx.Response(
                    self.submit_status,
                    json={"errors": [{"code": "x", "field": None, "message": "x"}]},
                    headers=self.submit_headers,
                )
            body = {"id": "6f1c1f52-32ba-4c1e-9d53-6a8cbf0b8e52", "reporter_token": "tok"}
            return httpx.Response(201, json=body)
        return httpx.Response(404, json={"errors": [{"code": "not_found"}]})

    def submissions(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == "/api/v1/reports" and r.method == "POST"]


Client = Callable[..., httpx.AsyncClient]


@pytest.fixture
def fake() -> FakeServices:
    return FakeServices()


@pytest.fixture
def web(fake: FakeServices) -> Client:
    def client(**settings: Any) -> httpx.AsyncClient:
        app = create_app(
            WebSettings(secret_key="test", **settings), transport=httpx.MockTransport(fake)
        )
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 5000)),
            base_url="http://web",
        )

    return client


async def form_token(client: httpx.AsyncClient) -> str:
    page = await client.get("/")
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert found, page.text
    return found.group(1)


def report(token: str, **fields: str) -> dict[str, str]:
    return {"csrf_token": token, "service_code": "001", "lat": "51.35", "long": "12.35"} | fields


async def test_a_form_without_its_csrf_token_is_refused(web: Client, fake: FakeServices) -> None:
    async with web() as client:
        await form_token(client)
        refused = await client.post("/", data=report("0" * 64))
        missing = await client.post("/", data={"service_code": "001"})
    assert refused.status_code == missing.status_code == 403
    assert "Das Formular ist abgelaufen" in refused.text
    assert fake.submissions() == []


async def test_a_token_or_cookie_with_non_ascii_characters_is_refused_like_any_wrong_one(
    web: Client, fake: FakeServices
) -> None:
    """``hmac.compare_digest`` refuses str with non-ASCII characters (a TypeError): such a
    token, sent by hand or by a broken client, gets the same 403 page as a wrong one."""
    form_type = {"content-type": "application/x-www-form-urlencoded"}
    async with web() as client:
        token = await form_token(client)
        answers = [
            await client.post("/", data=report("ä" * 64)),
            await client.post("/alerts", data={"csrf_token": "ü", "email": "a@example.org"}),
            # Not UTF-8 at all: the parser puts U+FFFD in its place.
            await client.post(
                "/", content=b"csrf_token=%FF%FE&service_code=001", headers=form_type
            ),
            await client.post("/", content="csrf_token=ü".encode("latin-1"), headers=form_type),
        ]
        client.cookies.clear()
        answers.append(
            await client.post(
                "/", data=report(token), headers={b"cookie": "mm_csrf=Grüße".encode()}
            )
        )
    assert [a.status_code for a in answers] == [403] * len(answers)
    assert all("Das Formular ist abgelaufen" in a.text for a in answers)
    assert fake.submissions() == []


async def test_odd_numbers_in_the_query_or_the_form_are_no_error(web: Client) -> None:
    async with web() as client:
        token = await form_token(client)
        pages = [
            await client.get("/reports", params={"page": page})
            for page in ("abc", "²", "9" * 5000, "-3", "0")
        ]
        alert = await client.post(
            "/alerts",
            data={
                "csrf_token": token,
                "email": "a@example.org",
                "kind": "point",
                "lat": "51.34",
                "long": "12.37",
                "radius_m": "²",
            },
        )
    assert [p.status_code for p in pages] == [200] * len(pages)
    assert alert.status_code == 422
    assert 'id="radius_m-error"' in alert.text


async def test_a_sign_in_key_no_issuer_hands_out_is_wrong_not_an_error(
    web: Client, fake: FakeServices
) -> None:
    """A key that cannot go into an Authorization header (non-ASCII, a line break) is refused
    like a wrong one, without asking intake."""
    fake.member = {"name": "Anna Amt", "offices": [], "admin": False}
    async with web() as client:
        page = await client.get("/staff/")
        token = re.findall(r'name="csrf_token" value="([0-9a-f]+)"', page.text)[0]
        answers = [
            await client.post("/staff/sign-in", data={"csrf_token": token, "token": key})
            for key in ("schlüssel", "mm_a\nb", "mm_a b", "x" * 10_000)
        ]
    assert [a.status_code for a in answers] == [401] * len(answers)
    assert all("mm_staff" not in a.cookies for a in answers)
    assert "make staff-token" not in page.text  # it speaks to staff, not to developers
    assert not [r for r in fake.requests if r.url.path == "/api/v1/staff/me"]


async def test_a_report_goes_to_intake_with_the_citizens_address(
    web: Client, fake: FakeServices
) -> None:
    async with web() as client:
        token = await form_token(client)
        sent = await client.post("/", data=report(token, email="A@Example.org", name="Ada"))
    assert sent.status_code == 303
    assert (
        sent.headers["location"] == "/reports/6f1c1f52-32ba-4c1e-9d53-6a8cbf0b8e52/sent?token=tok"
    )
    (submission,) = fake.submissions()
    assert submission.headers["x-forwarded-for"] == "203.0.113.7"
    assert submission.headers["idempotency-key"]
    sent_fields = parse_qs(submission.content.decode())
    assert sent_fields["email"] == ["a@example.org"]
    assert sent_fields["first_name"] == ["Ada"]


async def test_behind_a_trusted_proxy_the_forwarded_address_counts(
    web: Client, fake: FakeServices
) -> None:
    async with web(trusted_proxies=["203.0.113.0/24"]) as client:
        token = await form_token(client)
        await client.post(
            "/", data=report(token), headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.8"}
        )
    assert fake.submissions()[0].headers["x-forwarded-for"] == "198.51.100.9"


async def test_the_honeypot_keeps_a_bot_out_and_tells_a_person_what_to_do(
    web: Client, fake: FakeServices
) -> None:
    async with web() as client:
        token = await form_token(client)
        caught = await client.post("/", data=report(token, website="http://spam.example"))
    assert caught.status_code == 422
    assert "leer" in caught.text
    assert fake.submissions() == []


async def test_after_the_limit_per_address_a_429_with_retry_after(
    web: Client, fake: FakeServices
) -> None:
    async with web(rate_limit_per_address=2) as client:
        token = await form_token(client)
        answers = [await client.post("/", data=report(token)) for _ in range(3)]
    assert [a.status_code for a in answers] == [303, 303, 429]
    assert 0 < int(answers[2].headers["retry-after"]) <= 3600
    assert "Bitte einen Moment Geduld" in answers[2].text
    assert len(fake.submissions()) == 2


async def test_intakes_own_429_is_passed_on_as_the_friendly_page(
    web: Client, fake: FakeServices
) -> None:
    fake.submit_status, fake.submit_headers = 429, {"Retry-After": "120"}
    async with web() as client:
        token = await form_token(client)
        answer = await client.post("/", data=report(token))
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "120"


async def test_intake_away_is_a_page_asking_to_try_again(web: Client, fake: FakeServices) -> None:
    fake.submit_status, fake.submit_headers = 503, {"Retry-After": "5"}
    async with web() as client:
        token = await form_token(client)
        answer = await client.post("/", data=report(token, description="Schlagloch"))
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert "nicht erreichbar" in answer.text


async def test_an_oversized_form_is_refused_before_it_is_read(web: Client) -> None:
    async with web(max_body_bytes=1000) as client:
        token = await form_token(client)
        answer = await client.post("/", data=report(token, description="x" * 2000))
    assert answer.status_code == 413


async def test_bad_input_is_shown_beside_the_fields_not_sent(
    web: Client, fake: FakeServices
) -> None:
    async with web() as client:
        token = await form_token(client)
        answer = await client.post(
            "/",
            data=report(
                token, service_code="999", lat="north", email="nope", description="x" * 4001
            ),
        )
    assert answer.status_code == 422
    for field in ("service_code", "place", "email", "description"):
        assert f'id="{field}-error"' in answer.text
    assert fake.submissions() == []


async def test_with_a_geocoder_an_address_alone_places_the_report(
    web: Client, fake: FakeServices
) -> None:
    async with web(geocoder_url="http://geocoder") as client:
        token = await form_token(client)
        found = await client.post("/", data=report(token, lat="", long="", address="Markt 1"))
        unknown = await client.post("/", data=report(token, lat="", long="", address="Nirgendwo"))
    assert found.status_code == 303
    sent_fields = parse_qs(fake.submissions()[0].content.decode())
    assert sent_fields["lat"] == ["51.35"]
    assert sent_fields["address"] == ["Markt 1"]
    assert unknown.status_code == 422
    assert "Diese Adresse haben wir nicht gefunden" in unknown.text


async def test_english_by_accept_language_and_by_the_switch(web: Client) -> None:
    async with web() as client:
        english = await client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9,de;q=0.5"})
        switched = await client.get("/language/de?next=/alerts")
        german = await client.get("/", headers={"Accept-Language": "en"})
        outward = await client.get("/language/en?next=//evil.example/")
    assert '<html lang="en">' in english.text
    assert switched.status_code == 303
    assert switched.headers["location"] == "/alerts"
    assert '<html lang="de">' in german.text  # the switch's cookie wins over the browser
    assert outward.headers["location"] == "/"


def test_negotiation_follows_the_quality_values() -> None:
    assert negotiate("fr-FR, en;q=0.8, de;q=0.9") == "de"
    assert negotiate("en-US") == "en"
    assert negotiate("fr, es") == "de"
    assert negotiate("") == "de"


async def test_the_outlines_are_served_simplified_and_pages_load_nothing_from_elsewhere(
    web: Client,
) -> None:
    async with web() as client:
        areas = await client.get("/areas.geojson")
        page = await client.get("/")
    feature = areas.json()["features"][0]
    # The coarsest level, whose union is the city's outline (the form checks the pin against it).
    assert feature["properties"] == {
        "level": "stadtbezirk",
        "code": "0",
        "name": "Mitte",
        "outline": True,
    }
    assert not any(
        f["properties"]["outline"]
        for f in areas.json()["features"]
        if f["properties"]["level"] == "ortsteil"
    )
    assert feature["geometry"]["type"] == "MultiPolygon"
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    scripts = re.search(r"script-src ([^;]*);", policy)
    assert scripts is not None
    assert scripts.group(1).split()[0] == "'self'"
    assert all(source.startswith("'sha256-") for source in scripts.group(1).split()[1:])
    assert not re.search(r'(src|href)="https?://', page.text)


def test_simplifying_keeps_the_shape_and_drops_needless_points() -> None:
    wobbly = [[12.3 + i * 0.001, 51.3 + (0.00001 if i % 2 else 0)] for i in range(100)]
    ring = [*wobbly, [12.399, 51.4], [12.3, 51.4], [12.3, 51.3]]
    simple = geography.simplify_ring(ring)
    assert len(simple) < 10
    feature = {"geometry": {"type": "MultiPolygon", "coordinates": [[simple]]}}
    assert geography.contains(feature, 51.35, 12.35)
    assert not geography.contains(feature, 51.45, 12.35)


def test_what_is_derived_from_the_areas_is_made_again_only_for_a_new_answer() -> None:
    made: list[dict[str, Any]] = []

    def count(areas: dict[str, Any]) -> int:
        made.append(areas)
        return len(made)

    derived = geography.PerAnswer(count)
    first: dict[str, Any] = {"features": []}
    equal_but_new: dict[str, Any] = {"features": []}
    assert [derived.of("leipzig", first), derived.of("leipzig", first)] == [1, 1]
    assert derived.of("koeln", first) == 2
    assert derived.of("leipzig", equal_but_new) == 3
    assert made == [first, first, equal_but_new]


def test_the_sliding_window_forgets_old_hits_and_bounds_its_memory() -> None:
    now = [0.0]
    window = SlidingWindow(2, 60, max_keys=3, clock=lambda: now[0])
    assert window.retry_after("a") is None
    assert window.retry_after("a") is None
    assert window.retry_after("a") == 61
    now[0] = 61
    assert window.retry_after("a") is None
    for key in "bcde":
        window.retry_after(key)
    assert len(window._hits) == 3


async def test_health_and_metrics(web: Client) -> None:
    async with web() as client:
        health = await client.get("/healthz")
        metrics = await client.get("/metrics")
    # The stand-in answers /healthz with 404: web reports the services it depends on.
    assert health.status_code == 503
    assert json.loads(health.text)["checks"]["intake"].startswith("failing")
    assert "mm_http_requests_total" in metrics.text


# -- several cities ----------------------------------------------------------------------------

PAGE_LINK = re.compile(r'(?:href|action|data-geojson)="(/[^"]*)"')


def page_links(html: str) -> list[str]:
    return [
        link for link in PAGE_LINK.findall(html) if not link.startswith(("/static/", "/language/"))
    ]


async def test_a_city_is_served_under_its_prefix_with_its_name_outline_and_categories(
    web: Client, fake: FakeServices
) -> None:
    fake.jurisdictions = CITIES
    async with web() as client:
        moved = await client.get("/koeln")
        form = await client.get("/koeln/")
        reports = await client.get("/koeln/reports")
        alerts = await client.get("/koeln/alerts")
        areas = await client.get("/koeln/areas.geojson")
        leipzig = await client.get("/")
    assert moved.status_code == 308
    assert moved.headers["location"] == "/koeln/"
    assert "<title>Einen Mangel melden – Mängelmelder Köln</title>" in form.text
    assert "Leipzig" not in form.text
    assert 'data-bbox="6.77,50.83,7.16,51.08"' in form.text
    assert 'value="011"' not in form.text  # switched off in Köln
    assert 'value="011"' in leipzig.text
    assert "<title>Einen Mangel melden – Mängelmelder Leipzig</title>" in leipzig.text
    for page in (form, reports, alerts):
        assert page.status_code == 200
        assert page_links(page.text)
        assert all(link.startswith("/koeln/") for link in page_links(page.text))
    assert "Meldungen in Köln" in reports.text
    assert "Altstadt/Süd" in alerts.text
    assert areas.json()["features"][0]["properties"]["code"] == "101"
    asked = {r.url.params.get("jurisdiction") for r in fake.requests if r.url.path == "/v1/areas"}
    assert asked == {"koeln"}  # every area the pages of Köln showed was Köln's


async def test_a_report_sent_in_a_city_names_it_and_comes_back_to_its_pages(
    web: Client, fake: FakeServices
) -> None:
    fake.jurisdictions = CITIES
    async with web() as client:
        page = await client.get("/koeln/")
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
        assert token
        graffiti = await client.post(
            "/koeln/", data=report(token.group(1), service_code="011", lat="50.94", long="6.95")
        )
        sent = await client.post("/koeln/", data=report(token.group(1), lat="50.94", long="6.95"))
    assert graffiti.status_code == 422  # not offered in Köln, and not passed on
    [submission] = fake.submissions()
    assert parse_qs(submission.content.decode())["jurisdiction"] == ["koeln"]
    assert sent.status_code == 303
    assert sent.headers["location"].startswith("/koeln/reports/")


async def test_a_city_by_its_host_name_is_at_the_root(web: Client, fake: FakeServices) -> None:
    fake.jurisdictions = CITIES
    async with web(hosts={"maengelmelder.koeln.example": "koeln"}) as client:
        form = await client.get("/", headers={"Host": "maengelmelder.koeln.example"})
        alert = await client.post(
            "/alerts",
            headers={"Host": "maengelmelder.koeln.example"},
            data={
                "csrf_token": re.findall(r'name="csrf_token" value="([0-9a-f]+)"', form.text)[0],
                "email": "a@example.org",
                "kind": "area",
                "area": "101",
            },
        )
    assert "Mängelmelder Köln" in form.text
    assert {"/", "/reports", "/alerts"} <= set(page_links(form.text))
    assert alert.status_code == 200, alert.text
    [subscribed] = [r for r in fake.requests if r.url.path == "/api/v1/alerts"]
    assert json.loads(subscribed.content)["jurisdiction"] == "koeln"


async def test_the_pages_at_the_root_name_the_other_cities_served(
    web: Client, fake: FakeServices
) -> None:
    """Someone from Köln who lands on the root (Leipzig's pages) finds Köln's; Köln's own pages
    under its prefix stay Köln's alone."""
    fake.jurisdictions = CITIES
    async with web(hosts={"maengelmelder.koeln.example": "koeln"}) as client:
        leipzig = await client.get("/reports")
        koeln = await client.get("/koeln/reports")
        koeln_by_host = await client.get("/", headers={"Host": "maengelmelder.koeln.example"})
    assert 'Mängelmelder gibt es auch für <a href="/koeln/">Stadt Köln</a>' in leipzig.text
    assert "gibt es auch für" not in koeln.text
    assert 'auch für <a href="/leipzig/">Stadt Leipzig</a>' in koeln_by_host.text


async def test_an_unknown_city_is_a_friendly_404_naming_the_cities_served(
    web: Client, fake: FakeServices
) -> None:
    fake.jurisdictions = CITIES
    async with web() as client:
        unknown = await client.get("/atlantis/reports")
        staff_in_a_city = await client.get("/koeln/staff/")
    assert unknown.status_code == 404
    assert "Seite nicht gefunden" in unknown.text
    assert '<a href="/koeln/">Stadt Köln</a>' in unknown.text
    assert '<a href="/">Stadt Leipzig</a>' in unknown.text
    assert staff_in_a_city.status_code == 404  # the console is not per city


async def test_without_intakes_list_of_cities_the_default_city_alone(
    web: Client, fake: FakeServices
) -> None:
    async with web() as client:  # fake.jurisdictions is None: intake answers 404
        token = await form_token(client)
        sent = await client.post("/", data=report(token))
        koeln = await client.get("/koeln/")
    assert sent.status_code == 303
    [submission] = fake.submissions()
    assert "jurisdiction" not in parse_qs(submission.content.decode())  # an intake of one city
    assert koeln.status_code == 404


async def test_the_staff_console_shows_the_members_city(web: Client, fake: FakeServices) -> None:
    fake.jurisdictions = CITIES
    fake.member = {
        "name": "Anna Amt",
        "offices": [{"code": "OA", "name": "Ordnungsamt"}],
        "admin": False,
        "jurisdiction": "koeln",
    }
    async with web() as client:
        sign_in = await client.get("/staff/")
        token = re.findall(r'name="csrf_token" value="([0-9a-f]+)"', sign_in.text)[0]
        await client.post("/staff/sign-in", data={"csrf_token": token, "token": "t"})
        console = await client.get("/staff/canned-responses")
    assert "Angemeldet: Anna Amt · Stadt Köln" in console.text


async def test_the_console_shows_the_members_citys_areas(web: Client, fake: FakeServices) -> None:
    """A member in Köln filters by Köln's Stadtteile and sees Köln's outline on the map (they
    were Leipzig's: the default city's areas at a level Köln does not have)."""
    fake.jurisdictions = CITIES
    fake.member = {
        "name": "Anna Amt",
        "offices": [{"code": "OA", "name": "Ordnungsamt"}],
        "admin": False,
        "jurisdiction": "koeln",
    }
    async with web() as client:
        sign_in = await client.get("/staff/")
        token = re.findall(r'name="csrf_token" value="([0-9a-f]+)"', sign_in.text)[0]
        await client.post("/staff/sign-in", data={"csrf_token": token, "token": "t"})
        map_page = await client.get("/staff/map")
        outline = await client.get("/staff/areas.geojson")
    assert '<optgroup label="Stadtteil">' in map_page.text
    assert ">Altstadt/Süd</option>" in map_page.text
    assert ">Mitte</option>" not in map_page.text
    assert [f["properties"]["code"] for f in outline.json()["features"]] == ["101"]
    # Simplified as for the citizens' maps (as stored, the outlines are far too detailed).
    assert outline.json()["features"][0]["properties"]["outline"] is True
    assert outline.json()["features"][0]["geometry"]["type"] == "MultiPolygon"


async def test_the_link_in_the_mails_leads_to_the_report_as_its_citys(
    web: Client, fake: FakeServices
) -> None:
    fake.jurisdictions = CITIES
    in_koeln, in_leipzig = (
        "0b0d2f4e-5e7a-4c4f-9a51-3f0f8f4c9a01",
        "0b0d2f4e-5e7a-4c4f-9a51-3f0f8f4c9a02",
    )
    for report_id, jurisdiction in ((in_koeln, "koeln"), (in_leipzig, "leipzig")):
        fake.reports[report_id] = {
            "id": report_id,
            "status": "received",
            "service_code": "001",
            "jurisdiction": jurisdiction,
            "lat": 50.94,
            "long": 6.95,
            "history": [],
            "photos": [],
        }
    async with web(hosts={"maengelmelder.koeln.example": "koeln"}) as client:
        moved = await client.get(f"/reports/{in_koeln}?token=t")
        shown = await client.get(f"/koeln/reports/{in_koeln}")
        at_home = await client.get(f"/reports/{in_leipzig}")
        from_koelns_host = await client.get(
            f"/reports/{in_leipzig}", headers={"Host": "maengelmelder.koeln.example"}
        )
    assert moved.status_code == 307
    assert moved.headers["location"] == f"/koeln/reports/{in_koeln}?token=t"
    assert shown.status_code == 200
    assert "Mängelmelder Köln" in shown.text
    assert at_home.status_code == 200
    assert from_koelns_host.status_code == 307
    assert from_koelns_host.headers["location"] == f"/leipzig/reports/{in_leipzig}"


async def test_a_photo_standing_in_for_one_not_made_yet_is_not_cached_for_good(
    web: Client,
) -> None:
    digest = "ab" * 32
    async with web() as client:
        original = await client.get(f"/photos/{digest}/original")
        display = await client.get(f"/photos/{digest}/display")
    assert original.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert display.status_code == 200
    assert display.headers["cache-control"] == "public, max-age=60"


MINE = "0b0d2f4e-5e7a-4c4f-9a51-3f0f8f4c9a03"


def my_report(status: str) -> dict[str, Any]:
    """The reporter's own report as intake answers it, in the given status."""
    return {
        "id": MINE,
        "status": status,
        "service_code": "001",
        "lat": 51.34,
        "long": 12.37,
        "history": [],
        "photos": [],
    }


def erased(fake: FakeServices) -> list[httpx.Request]:
    return [r for r in fake.requests if r.url.path.endswith("/contact/erase")]


async def test_the_contact_data_is_erased_only_once_confirmed(
    web: Client, fake: FakeServices
) -> None:
    fake.reports[MINE] = my_report(status="received")
    async with web() as client:
        csrf_token = await form_token(client)
        asked = {"csrf_token": csrf_token, "token": "secret"}
        question = await client.post(f"/reports/{MINE}/erase-contact", data=asked)
        not_yes = await client.post(
            f"/reports/{MINE}/erase-contact", data=asked | {"confirm": "ja"}
        )
        assert erased(fake) == []
        confirmed = await client.post(
            f"/reports/{MINE}/erase-contact", data=asked | {"confirm": "yes"}
        )
        unknown = await client.post(
            "/reports/0b0d2f4e-5e7a-4c4f-9a51-3f0f8f4c9aff/erase-contact", data=asked
        )
        in_english = await client.post(
            f"/reports/{MINE}/erase-contact", data=asked, headers={"Accept-Language": "en"}
        )
        # The language switch's address: the question again, asked by GET.
        switched = await client.get(
            f"/reports/{MINE}/erase-contact?token=secret", headers={"Accept-Language": "en"}
        )
    # The question says what goes and that it cannot be undone; only its answer erases.
    assert question.status_code == not_yes.status_code == 200
    assert "Kontaktdaten wirklich löschen?" in question.text
    assert "nicht rückgängig" in question.text
    assert 'name="confirm" value="yes"' in question.text
    assert f'href="/reports/{MINE}?token=secret#erase-title">Abbrechen</a>' in question.text
    assert question.headers["cache-control"] == "no-store"
    assert "This cannot be undone." in in_english.text
    assert ">Yes, delete</button>" in in_english.text
    assert f"/language/en?next=/reports/{MINE}/erase-contact%3Ftoken%3Dsecret" in question.text
    assert switched.status_code == 200
    assert ">Yes, delete</button>" in switched.text
    assert 'name="token" value="secret"' in switched.text
    assert confirmed.status_code == 303
    assert confirmed.headers["location"] == f"/reports/{MINE}?token=secret&done=erased#outcome"
    settings = WebSettings(secret_key="test")
    assert [(str(r.url), json.loads(r.content)) for r in erased(fake)] == [
        (f"{url}/api/v1/reports/{MINE}/contact/erase", {"reporter_token": "secret"})
        for url in (settings.intake_url, settings.notifier_url)
    ]
    assert unknown.status_code == 404


def test_the_areas_by_level_coarsest_first_each_by_name() -> None:
    def area(level: str, code: str, name: str) -> dict[str, Any]:
        return {"properties": {"level": level, "code": code, "name": name}}

    collection = {
        "features": [
            area("ortsteil", "01", "Zentrum-Ost"),
            area("stadtbezirk", "0", "Mitte"),
            area("ortsteil", "00", "Zentrum"),
            area("stadtbezirk", "1", "Nordost"),
            area("ortsteil", "10", "Schönefeld"),
        ]
    }
    assert geography.by_level(collection) == [
        ("stadtbezirk", [{"name": "Mitte", "code": "0"}, {"name": "Nordost", "code": "1"}]),
        (
            "ortsteil",
            [
                {"name": "Schönefeld", "code": "10"},
                {"name": "Zentrum", "code": "00"},
                {"name": "Zentrum-Ost", "code": "01"},
            ],
        ),
    ]
    assert geography.by_level({"features": []}) == []


async def test_the_language_switch_on_an_answer_to_a_form_leads_to_a_page_not_a_405(
    web: Client, fake: FakeServices
) -> None:
    fake.reports[MINE] = my_report(status="resolved")
    async with web() as client:
        csrf_token = await form_token(client)
        follow = await client.post(
            f"/reports/{MINE}/follow", data={"csrf_token": csrf_token, "email": "kein-at"}
        )
        not_fixed = await client.post(
            f"/reports/{MINE}/not-fixed",
            data={"csrf_token": csrf_token, "token": "a+b/c", "note": ""},
        )
        switches = [
            re.findall(r'href="/language/en\?next=([^"]+)"', page.text)[0]
            for page in (follow, not_fixed)
        ]
        landed = [
            await client.get(f"/language/en?next={switch}", follow_redirects=True)
            for switch in switches
        ]
    assert follow.status_code == not_fixed.status_code == 422
    # Encoded once for the address, once more as the value of next.
    assert switches == [f"/reports/{MINE}", f"/reports/{MINE}%3Ftoken%3Da%252Bb%252Fc"]
    assert [page.status_code for page in landed] == [200, 200]
    assert all('<html lang="en">' in page.text for page in landed)
    assert 'name="token" value="a+b/c"' in landed[1].text


async def test_on_any_other_answer_to_a_post_the_switch_leads_to_the_nearest_page_above(
    web: Client, fake: FakeServices
) -> None:
    fake.jurisdictions = CITIES
    async with web() as client:
        token = await form_token(client)
        wrong_key = await client.post("/staff/sign-in", data={"csrf_token": token, "token": ""})
        in_koeln = await client.post(
            "/koeln/reports/0b0d2f4e-5e7a-4c4f-9a51-3f0f8f4c9a03/follow",
            data={"csrf_token": token, "email": "kein-at"},
        )
        form_in_koeln = await client.post("/koeln/", data={"csrf_token": token})
        switch = re.findall(r'href="/language/en\?next=([^"]+)"', wrong_key.text)[0]
        landed = await client.get(f"/language/en?next={switch}", follow_redirects=True)
    assert wrong_key.status_code == 422
    assert switch == "/staff/"
    assert landed.status_code == 200
    assert '<html lang="en">' in landed.text
    # A city's pages keep its prefix.
    assert "/language/en?next=/koeln/reports/" in in_koeln.text
    assert form_in_koeln.status_code == 422
    assert 'href="/language/en?next=/koeln/"' in form_in_koeln.text
