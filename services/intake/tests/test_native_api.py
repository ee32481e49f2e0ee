"""The city app's API over the real database and broker: photos, duplicates, idempotency,
outside-the-city refusal, privacy."""

import functools
import io
import random
from typing import Any
from uuid import UUID, uuid4

import pytest
from PIL import Image

from conftest import Stack
from devstack.pictures import noisy_picture, phone_jpeg, png_bomb
from devstack.testing import eventually
from mm_shared.events import Topic

HERE = {"lat": 51.3407, "long": 12.3747}


def spot() -> dict[str, float]:
    """A fresh place inside Leipzig for each test, so duplicate hints do not cross tests."""
    return {
        "lat": round(random.uniform(51.30, 51.37), 6),
        "long": round(random.uniform(12.33, 12.42), 6),
    }


async def test_photos_are_stripped_of_metadata_oriented_and_served(stack: Stack) -> None:
    response = await stack.intake.post(
        "/api/v1/reports",
        data={
            "service_code": "011",
            **{k: str(v) for k, v in spot().items()},
            "description": "Graffiti",
            "email": "photo@example.org",
        },
        files=[("photos", ("a.jpg", phone_jpeg(), "image/jpeg"))],
    )
    assert response.status_code == 201, response.text
    body = response.json()
    [photo] = body["photos"]
    original = await stack.intake.get(photo["original_url"].removeprefix("http://127.0.0.1:8000"))
    assert original.status_code == 200
    assert original.headers["content-type"] == "image/jpeg"
    data = original.content
    for secret in (b"PhoneMaker", b"Musterstr"):
        assert secret not in data
    stored = Image.open(io.BytesIO(data))
    assert dict(stored.getexif()) == {0x0112: 6}  # only the orientation survives
    assert not stored.getexif().get_ifd(0x8825)  # no location

    async def display_made() -> bytes | None:
        # Made in the background: until then the original stands in, briefly cacheable.
        shown = await stack.intake.get(photo["url"].removeprefix("http://127.0.0.1:8000"))
        return shown.content if "immutable" in shown.headers["cache-control"] else None

    display = Image.open(io.BytesIO(await eventually(display_made)))
    assert display.height > display.width  # rotated upright
    assert not display.getexif()
    thumb = await stack.intake.get(photo["thumbnail_url"].removeprefix("http://127.0.0.1:8000"))
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 320
    public = await stack.intake.get(f"/api/v1/reports/{body['id']}")
    assert "photo@example.org" not in public.text
    open311 = await stack.intake.get(f"/open311/v2/requests/{body['id']}.json")
    assert open311.json()[0]["media_url"] == photo["url"]


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"definitely not a picture", 422, "photo_not_an_image"),
        (png_bomb(), 422, "photo_decompression_bomb"),
        (phone_jpeg()[:5000], 422, "photo_truncated"),
        (phone_jpeg() + b"PK\x03\x04" + b"\x00" * 4096, 422, "photo_polyglot"),
        (b"\xff\xd8" + b"\x00" * (10 * 1024 * 1024), 413, "photo_too_large"),
    ],
)
async def test_bad_files_are_refused_with_a_clear_code(stack: Stack, content, status, code) -> None:  # type: ignore[no-untyped-def]
    response = await stack.intake.post(
        "/api/v1/reports",
        data={"service_code": "011", **{k: str(v) for k, v in spot().items()}},
        files=[("photos", ("x.jpg", content, "image/jpeg"))],
    )
    assert response.status_code == status, response.text
    [error] = response.json()["errors"]
    assert error["code"] == code
    assert error["field"] == "photos[0]"


HEIC = noisy_picture("HEIF")
WEBP = noisy_picture("WEBP")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        # pillow-heif reads the header of a truncated HEIC; it fails only when the pixels load.
        ("cut.heic", HEIC[: len(HEIC) // 2]),
        ("cut.webp", WEBP[: len(WEBP) // 2]),
        ("header-only.webp", WEBP[:30]),
        ("scrambled.webp", WEBP[:40] + random.Random(2).randbytes(len(WEBP) - 40)),
        ("broken-frame-header.webp", WEBP[:20] + bytes(10) + WEBP[30:]),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_an_undecodable_photo_is_a_422_naming_it(
    stack: Stack, name: str, content: bytes
) -> None:
    """It had been a 500 (HEIC) or a 503 "storage unavailable" telling the client to retry a
    file that can never work (WebP)."""
    response = await stack.intake.post(
        "/api/v1/reports",
        data={"service_code": "011", **{k: str(v) for k, v in spot().items()}},
        files=[
            ("photos", ("fine.jpg", phone_jpeg(64, 48), "image/jpeg")),
            ("photos", (name, content, "application/octet-stream")),
        ],
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["code"] == "photo_damaged"
    assert error["field"] == "photos[1]"
    assert name in error["message"]


async def test_whole_pictures_of_every_accepted_kind_pass(stack: Stack) -> None:
    response = await stack.intake.post(
        "/api/v1/reports",
        data={"service_code": "011", **{k: str(v) for k, v in spot().items()}},
        files=[
            ("photos", ("a.heic", HEIC, "image/heic")),
            ("photos", ("b.webp", WEBP, "image/webp")),
        ],
    )
    assert response.status_code == 201, response.text
    assert len(response.json()["photos"]) == 2


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"service_code": "001", "lat": Infinity, "long": 12.3731}'),
        ("application/json", b'{"service_code": "001", "lat": 1e309, "long": 12.3731}'),
        ("application/json", b'{"service_code": "001", "lat": NaN, "long": 12.3731}'),
        ("application/x-www-form-urlencoded", b"service_code=001&lat=inf&long=12.3731"),
        ("application/x-www-form-urlencoded", b"service_code=001&lat=51.34&long=-inf"),
    ],
    ids=["json-Infinity", "json-1e309", "json-NaN", "form-inf", "form-minus-inf"],
)
async def test_an_infinite_coordinate_is_a_422_not_a_crash_in_the_duplicate_lookup(
    stack: Stack, content_type: str, body: bytes
) -> None:
    response = await stack.intake.post(
        "/api/v1/reports", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "lat,long"
    assert "finite" in error["message"]


async def test_more_than_five_photos_are_refused(stack: Stack) -> None:
    picture = phone_jpeg(64, 48)
    response = await stack.intake.post(
        "/api/v1/reports",
        data={"service_code": "011", **{k: str(v) for k, v in spot().items()}},
        files=[("photos", (f"{i}.jpg", picture, "image/jpeg")) for i in range(6)],
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "too_many_photos"


async def test_nearby_open_report_comes_back_as_possible_duplicate(stack: Stack) -> None:
    place = spot()
    first = await stack.intake.post("/api/v1/reports", json={"service_code": "006", **place})
    assert first.status_code == 201
    near = {"lat": place["lat"] + 0.0002, "long": place["long"]}  # ~22 m north
    second = await stack.intake.post("/api/v1/reports", json={"service_code": "006", **near})
    assert second.status_code == 409
    [duplicate] = second.json()["duplicates"]
    assert duplicate["id"] == first.json()["id"]
    assert 15 < duplicate["distance_m"] < 30
    other_kind = await stack.intake.post("/api/v1/reports", json={"service_code": "007", **near})
    assert other_kind.status_code == 201
    confirmed = await stack.intake.post(
        "/api/v1/reports",
        json={"service_code": "006", **near},
        headers={"X-Acknowledge-Duplicate": "true"},
    )
    assert confirmed.status_code == 201


async def test_me_too_subscribes_the_follower_on_the_private_topic(stack: Stack) -> None:
    created = await stack.intake.post("/api/v1/reports", json={"service_code": "006", **spot()})
    report_id = UUID(created.json()["id"])
    followed = await stack.intake.post(
        f"/api/v1/reports/{report_id}/followers", json={"email": "metoo@example.org"}
    )
    assert followed.status_code == 202
    [contact] = await eventually(lambda: _records(stack, report_id, Topic.REPORTER_CONTACT))
    assert contact.json()["email"] == "metoo@example.org"
    missing = await stack.intake.post(
        f"/api/v1/reports/{uuid4()}/followers", json={"email": "x@example.org"}
    )
    assert missing.status_code == 404


async def test_a_retry_with_the_same_idempotency_key_creates_nothing_new(stack: Stack) -> None:
    key = str(uuid4())
    body = {"service_code": "004", **spot()}
    first = await stack.intake.post("/api/v1/reports", json=body, headers={"Idempotency-Key": key})
    again = await stack.intake.post("/api/v1/reports", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = await stack.intake.post(
        "/api/v1/reports", json={**body, "description": "changed"}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 422
    assert other.json()["errors"][0]["code"] == "idempotency_key_reused"
    await eventually(lambda: _records(stack, UUID(first.json()["id"]), Topic.REPORT_SUBMITTED))
    assert len(stack.tap.about(UUID(first.json()["id"]), Topic.REPORT_SUBMITTED)) == 1


async def test_a_place_outside_the_city_is_refused_at_submission(stack: Stack) -> None:
    await stack.boundary_known()
    berlin = {"lat": 52.52, "long": 13.405}
    native = await stack.intake.post("/api/v1/reports", json={"service_code": "001", **berlin})
    assert native.status_code == 422
    assert native.json()["errors"][0]["code"] == "outside_jurisdiction"
    open311 = await stack.intake.post(
        "/open311/v2/requests.json",
        data={"api_key": "test-key", "service_code": "001", "lat": "52.52", "long": "13.405"},
    )
    assert open311.status_code == 400
    # The refusal names the places the deployment serves.
    assert "outside the areas this service covers: " in open311.json()[0]["description"]
    assert "Stadt Leipzig" in open311.json()[0]["description"]


async def test_swapped_coordinates_get_a_hint(stack: Stack) -> None:
    await stack.boundary_known()
    response = await stack.intake.post(
        "/api/v1/reports", json={"service_code": "001", "lat": 12.3731, "long": 51.3397}
    )
    assert response.status_code == 422
    assert (
        "look swapped: did you mean lat=51.3397, long=12.3731"
        in response.json()["errors"][0]["message"]
    )


async def test_json_validation_errors_are_machine_readable(stack: Stack) -> None:
    response = await stack.intake.post(
        "/api/v1/reports", json={"service_code": "001", "lat": "north", "email": "nope"}
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"lat", "long", "email"} <= fields
    for body in (b"{", b"[" * 100_000 + b"]" * 100_000):
        broken = await stack.intake.post(
            "/api/v1/reports", content=body, headers={"content-type": "application/json"}
        )
        assert broken.status_code == 400
        assert broken.json()["errors"][0]["code"] == "invalid_json"


async def test_a_json_report_the_size_of_a_photo_is_refused(stack: Stack) -> None:
    report = {"service_code": "001", "lat": 51.3397, "long": 12.3731, "description": "x" * 300_000}
    response = await stack.intake.post("/api/v1/reports", json=report)
    assert response.status_code == 413
    assert response.json()["errors"][0]["code"] == "body_too_large"


async def test_a_malformed_path_gets_the_same_error_shape(stack: Stack) -> None:
    response = await stack.intake.get("/api/v1/reports/not-an-id")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "report_id"
    unknown = await stack.intake.get("/api/v1/nothing-here")
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0]["code"] == "not_found"


async def test_map_geojson_has_no_personal_data(stack: Stack) -> None:
    place = spot()
    created = await stack.intake.post(
        "/api/v1/reports",
        json={"service_code": "008", **place, "email": "secret@example.org", "first_name": "Erika"},
    )
    bbox = f"{place['long'] - 0.001},{place['lat'] - 0.001},{place['long'] + 0.001},{place['lat'] + 0.001}"
    geojson = await stack.intake.get("/api/v1/reports", params={"bbox": bbox})
    assert geojson.status_code == 200
    assert geojson.headers["content-type"].startswith("application/geo+json")
    ids = [f["id"] for f in geojson.json()["features"]]
    assert created.json()["id"] in ids
    assert "secret@example.org" not in geojson.text
    assert "Erika" not in geojson.text
    assert (await stack.intake.get("/api/v1/reports", params={"bbox": "1,2,3"})).status_code == 400


@pytest.mark.parametrize("bbox", ["nan,nan,nan,nan", "12.3,51.3,inf,51.4", "-inf,51.3,12.4,51.4"])
async def test_a_non_finite_bbox_is_a_400(stack: Stack, bbox: str) -> None:
    response = await stack.intake.get("/api/v1/reports", params={"bbox": bbox})
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["code"] == "invalid_bbox"


async def test_no_public_topic_ever_carries_contact_data(stack: Stack) -> None:
    await stack.intake.post(
        "/api/v1/reports",
        json={
            "service_code": "001",
            **spot(),
            "email": "private@example.org",
            "last_name": "Mustermann",
        },
    )
    await eventually(lambda: _any_contact(stack, "private@example.org"))
    for record in stack.tap.records:
        if record.topic != Topic.REPORTER_CONTACT:
            assert b"private@example.org" not in record.value
            assert b"Mustermann" not in record.value


async def _any_contact(stack: Stack, email: str):  # type: ignore[no-untyped-def]
    return [
        r
        for r in stack.tap.records
        if r.topic == Topic.REPORTER_CONTACT and email.encode() in r.value
    ]


async def _records(stack: Stack, report_id, topic):  # type: ignore[no-untyped-def]
    return stack.tap.about(report_id, topic)


async def test_a_browser_gets_the_report_as_a_page_in_its_language(stack: Stack) -> None:
    created = await stack.intake.post(
        "/api/v1/reports",
        json={
            "service_code": "001",
            **spot(),
            "description": "<script>alert(1)</script> Müll am Weg",
            "email": "page@example.org",
        },
        headers={"X-Acknowledge-Duplicate": "true"},
    )
    assert created.status_code == 201, created.text
    url = f"/api/v1/reports/{created.json()['id']}"
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    english = await stack.intake.get(url, headers={**browser, "Accept-Language": "en-GB,en"})
    assert english.status_code == 200
    assert english.headers["content-type"].startswith("text/html")
    assert "<h1>Road damage / pothole</h1>" in english.text
    assert "Handled by:" in english.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Müll am Weg" in english.text
    assert "<script>" not in english.text
    assert "page@example.org" not in english.text
    german = await stack.intake.get(url, headers=browser)
    assert "<h1>Straßenschaden / Schlagloch</h1>" in german.text
    assert (await stack.intake.get(url)).headers["content-type"] == "application/json"
    missing = await stack.intake.get(f"/api/v1/reports/{uuid4()}", headers=browser)
    assert missing.status_code == 404
    assert "text/html" in missing.headers["content-type"]


async def test_the_public_list_by_area_and_category_newest_first(stack: Stack) -> None:
    ids = []
    for code in ("002", "002", "008"):
        created = await stack.intake.post(
            "/api/v1/reports",
            json={"service_code": code, **spot()},
            headers={"X-Acknowledge-Duplicate": "true"},
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])

    async def routed(report_id: str) -> dict[str, Any] | None:
        body = (await stack.intake.get(f"/api/v1/reports/{report_id}")).json()
        return body if body["status"] == "assigned" else None

    first, _, other = [await eventually(functools.partial(routed, i)) for i in ids]
    assert first["agency_responsible"] == first["office"]["name"]
    [district, *_] = first["areas"]  # the Stadtbezirk, by code and by name alike
    for area in (district["code"], district["name"]):
        listed = await stack.intake.get(
            "/api/v1/reports", params={"area": area, "service_code": "002,001", "limit": 1000}
        )
        assert listed.status_code == 200, listed.text
        features = listed.json()["features"]
        assert all(f["properties"]["service_code"] in ("002", "001") for f in features)
        assert all(district in f["properties"]["areas"] for f in features)
        listed_ids = [f["id"] for f in features]
        assert first["id"] in listed_ids
        assert other["id"] not in listed_ids
        times = [f["properties"]["requested_at"] for f in features]
        assert times == sorted(times, reverse=True)
        properties = features[listed_ids.index(first["id"])]["properties"]
        assert {"requested_at", "service_code", "service_name", "status"} <= properties.keys()
        assert properties["agency_responsible"] == first["office"]["name"]
    newest = await stack.intake.get(
        "/api/v1/reports", params={"area": district["code"], "status": "all", "limit": 1}
    )
    assert len(newest.json()["features"]) == 1
    everywhere = "12.2,51.2,13.0,51.5"
    refusals: tuple[tuple[dict[str, str | int], str], ...] = (
        ({}, "invalid_bbox"),
        ({"area": ""}, "invalid_bbox"),
        ({"bbox": "nan,51,12.4,51.4"}, "invalid_bbox"),
        ({"bbox": everywhere, "service_code": "999"}, "invalid_service_code"),
        ({"bbox": everywhere, "limit": 0}, "invalid_field"),
        ({"bbox": everywhere, "limit": 1001}, "invalid_field"),
    )
    for refused, code in refusals:
        response = await stack.intake.get("/api/v1/reports", params=refused)
        assert response.status_code in (400, 422), (refused, response.text)
        assert response.json()["errors"][0]["code"] == code, refused
