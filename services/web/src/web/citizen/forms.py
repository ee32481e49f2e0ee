"""The report form: what a citizen sent, checked before it goes to intake, and intake's
refusals turned into messages beside the fields they concern."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData, UploadFile

from mm_shared.categories import CATEGORIES, CATEGORIES_BY_CODE, Category
from web.adapters.services import Answer, Upload

MAX_PHOTOS = 5
MAX_PHOTO_BYTES = 10 * 2**20
MAX_DESCRIPTION = 4000
PHOTO_TYPES = {"image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"}
#: Deliberately loose: the notifier checks the address properly; this catches typing slips.
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: The honeypot: hidden from people (and screen readers), filled by bots.
HONEYPOT = "website"
TEXT_FIELDS = ("service_code", "lat", "long", "address", "description", "email", "name")


@dataclass(frozen=True)
class AttributeQuestion:
    """One Open311 attribute of a category, in the page's language."""

    code: str
    datatype: str
    label: str
    hint: str
    required: bool
    values: list[tuple[str, str]]


def bilingual(text: str, lang: str) -> str:
    """The catalogue writes "Deutsch / English"; one side of it."""
    german, _, english = text.partition(" / ")
    if lang == "en":
        return english or german
    return german


def questions(definition: dict[str, Any], lang: str) -> list[AttributeQuestion]:
    """Intake's Open311 service definition as questions (sorted by their order)."""
    found = []
    for a in sorted(definition.get("attributes", []), key=lambda a: a.get("order", 0)):
        if not a.get("variable", True):
            continue
        found.append(
            AttributeQuestion(
                code=a["code"],
                datatype=a["datatype"],
                label=bilingual(a["description"], lang),
                hint=bilingual(a.get("datatype_description") or "", lang),
                required=bool(a.get("required")),
                values=[(v["key"], bilingual(v["name"], lang)) for v in a.get("values", [])],
            )
        )
    return found


def category_groups(
    lang: str, disabled: Collection[str] = ()
) -> list[tuple[str, list[tuple[str, str]]]]:
    """The categories by group, for the select's optgroups: [(group, [(code, name)])], without
    those the city switched off."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for category in CATEGORIES:
        if category.code in disabled:
            continue
        groups.setdefault(category.group, []).append((category.code, category.name(lang)))
    return list(groups.items())


@dataclass
class ReportForm:
    """What was sent, as text (to show it again), the photos, and the problems found: field →
    message key."""

    values: dict[str, str]
    attributes: dict[str, list[str]] = field(default_factory=dict)
    photos: list[Upload] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    acknowledge_duplicate: bool = False
    submission_id: str = ""
    honeypot_filled: bool = False

    @property
    def category(self) -> Category | None:
        return CATEGORIES_BY_CODE.get(self.values.get("service_code", ""))

    @property
    def email(self) -> str:
        return self.values.get("email", "").strip().lower()

    def coordinates(self) -> tuple[float, float] | None:
        try:
            lat = float(self.values.get("lat", "").replace(",", "."))
            long = float(self.values.get("long", "").replace(",", "."))
        except ValueError:
            return None
        if not (-90 <= lat <= 90 and -180 <= long <= 180):
            return None
        return lat, long

    def intake_fields(self, lang: str) -> dict[str, Any]:
        """The multipart fields of intake's ``POST /api/v1/reports``."""
        coordinates = self.coordinates()
        assert coordinates is not None
        fields: dict[str, Any] = {
            "service_code": self.values["service_code"],
            "lat": str(coordinates[0]),
            "long": str(coordinates[1]),
            "description": self.values.get("description", "").strip(),
            "locale": lang,
        }
        if address := self.values.get("address", "").strip():
            fields["address"] = address
        if self.email:
            fields["email"] = self.email
            if name := self.values.get("name", "").strip():
                fields["first_name"] = name
        for code, values in self.attributes.items():
            fields[f"attribute[{code}]"] = values
        return fields


async def read_report_form(
    form: FormData, attribute_questions: list[AttributeQuestion]
) -> ReportForm:
    """Reads and checks the form (the chosen category's ``attribute_questions`` only)."""
    values = {
        name: value.strip() if isinstance(value := form.get(name, ""), str) else ""
        for name in TEXT_FIELDS
    }
    report = ReportForm(
        values=values,
        acknowledge_duplicate=form.get("acknowledge_duplicate") == "1",
        submission_id=str(form.get("submission_id", ""))[:100],
        honeypot_filled=bool(str(form.get(HONEYPOT, "")).strip()),
    )
    errors = report.errors
    if report.category is None:
        errors["service_code"] = "form.error.category"
    if report.coordinates() is None:
        errors["place"] = "form.error.place"
    if len(values["description"]) > MAX_DESCRIPTION:
        errors["description"] = "form.error.description_long"
    if values["email"] and not EMAIL.match(values["email"]):
        errors["email"] = "form.error.email"
    if len(values["name"]) > 200:
        errors["name"] = "form.error.name_long"
    if len(values["address"]) > 500:
        errors["address"] = "form.error.address_long"
    for question in attribute_questions:
        given = [
            v
            for v in form.getlist(f"attribute[{question.code}]")
            if isinstance(v, str) and v.strip()
        ]
        if given:
            report.attributes[question.code] = [v.strip()[:500] for v in given]
        elif question.required:
            errors[f"attribute[{question.code}]"] = "form.error.attribute"
    uploads = [f for f in form.getlist("photos") if isinstance(f, UploadFile) and f.filename]
    if len(uploads) > MAX_PHOTOS:
        errors["photos"] = "form.error.photos_many"
    else:
        for upload in uploads:
            content = await upload.read(MAX_PHOTO_BYTES + 1)
            if not content:
                continue
            if len(content) > MAX_PHOTO_BYTES:
                errors["photos"] = "form.error.photo_large"
            elif (upload.content_type or "") not in PHOTO_TYPES:
                errors["photos"] = "form.error.photo_type"
            report.photos.append((upload.filename or "photo", content, upload.content_type or ""))
    return report


def intake_refusal(answer: Answer) -> dict[str, str]:
    """Intake's 4xx refusal of a submission as field → message key."""
    errors: dict[str, str] = {}
    for error in answer.body.get("errors", []) if isinstance(answer.body, dict) else []:
        code, where = error.get("code", ""), error.get("field") or ""
        if code == "outside_jurisdiction":
            errors["place"] = "form.error.outside"
        elif code.startswith("photo_") or code in ("too_many_photos", "body_too_large"):
            errors["photos"] = "form.error.photo_refused"
        elif where.startswith("attribute") or "attribute" in error.get("message", ""):
            errors["service_code"] = "form.error.attribute"
        elif where in ("lat", "long"):
            errors["place"] = "form.error.place"
        elif where in ("description", "email", "address", "service_code"):
            errors[where] = f"form.error.{where}"
        elif where in ("first_name", "last_name"):
            errors["name"] = "form.error.name_long"
        else:
            errors["form"] = "form.error.refused"
    return errors or {"form": "form.error.refused"}
