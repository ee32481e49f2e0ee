"""What the OpenAPI documents say about refusals, so that they are contracts: the platform's
error shape as a model, ``responses=`` for the refusals a route sends itself, and the refusals
the service frame sends for every route (a forbidden character, a body too large, FastAPI's own
validation, a database away) added to every operation in the shape the service really answers.
FastAPI's default ``{"detail"}`` 422 is replaced: no service answers in that shape."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field

SCHEMAS = "#/components/schemas/"


class ErrorOut(BaseModel):
    code: str = Field(description="machine-readable, e.g. invalid_field, not_found")
    field: str | None = Field(description="the field at fault; null for the request as a whole")
    message: str


class ErrorsOut(BaseModel):
    """The platform's JSON error shape: one entry per problem."""

    errors: list[ErrorOut]


def describe(status: int) -> str:
    return HTTPStatus(status).phrase


def refusals(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for refusals in the platform's ``{"errors"}`` shape, as JSON whatever the
    route's own answer is (CSV, GeoJSON, a photo); ``descriptions`` by ``s<status>``."""
    return {
        status: json_answer("ErrorsOut", descriptions.get(f"s{status}", describe(status)))
        for status in statuses
    }


def json_answer(schema_name: str, description: str) -> dict[str, Any]:
    """A response object in JSON of a component schema (FastAPI's ``model`` would put it under
    the route's own media type). The service registers the model (``refusal_models``)."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": SCHEMAS + schema_name}}},
    }


#: The OpenAPI response object of a refusal the frame sends with ``status`` on ``path``, or None
#: where the frame sends no such status (e.g. an API that answers 422 as 400).
RefusalDoc = Callable[[str, int], dict[str, Any] | None]


def json_refusal(schema_name: str) -> Callable[[str, int], dict[str, Any]]:
    """Every frame refusal as JSON in the component schema ``schema_name``."""

    def doc(_: str, status: int) -> dict[str, Any]:
        return json_answer(schema_name, FRAME_REASONS[status])

    return doc


#: The refusals of the service frame (mm_shared.service) and why each is sent.
FRAME_REASONS = {
    400: "A character XML 1.0 forbids (NUL, most control characters) in the path or query",
    413: "The request body is larger than the service takes",
    422: "A path, query, header or body field is not valid",
    503: "The database (or the disk) is unavailable for a moment: retry after Retry-After",
}
_FASTAPI_VALIDATION = SCHEMAS + "HTTPValidationError"


def _models_schemas(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=SCHEMAS + "{model}")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


def document_frame_refusals(
    document: dict[str, Any], refusal_doc: RefusalDoc, models: Iterable[type[BaseModel]]
) -> None:
    """Add the frame's refusals to every operation of ``document`` (in place), where the route
    does not document that status itself, and drop FastAPI's ``{"detail"}`` 422."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(_models_schemas([ErrorsOut, *models]))
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            default_422 = responses.get("422", {})
            if _FASTAPI_VALIDATION in str(default_422):
                del responses["422"]
            statuses = [400, 503]
            if operation.get("parameters") or operation.get("requestBody"):
                statuses.append(422)
            if method in ("post", "put", "patch"):
                statuses.append(413)
            for status in statuses:
                if str(status) in responses:
                    continue
                if (response := refusal_doc(path, status)) is not None:
                    responses[str(status)] = response
    if _FASTAPI_VALIDATION not in str(document.get("paths")):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
