"""Open311 answers in JSON or XML, from the same Python structures; CSV exports that stream."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from enum import StrEnum
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

from fastapi.responses import JSONResponse, Response, StreamingResponse

from mm_shared.categories import CATEGORIES_BY_CODE
from mm_shared.text import xml_safe

#: The first columns of every report export.
REPORT_COLUMNS = [
    "id",
    "status",
    "service_code",
    "service_name",
    "stadtbezirk",
    "ortsteil",
    "lat",
    "long",
]


def report_columns(row: Any) -> list[object]:
    """:data:`REPORT_COLUMNS` of a row of ``intake.reports`` (German category names)."""
    category = CATEGORIES_BY_CODE.get(row.service_code)
    levels = {a["level"]: a["name"] for a in row.areas}
    return [
        row.id,
        row.status,
        row.service_code,
        category.name_de if category else "",
        levels.get("stadtbezirk", ""),
        levels.get("ortsteil", ""),
        row.lat,
        row.long,
    ]


#: What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: object) -> object:
    """A text cell that a spreadsheet would run as a formula (``=HYPERLINK(...)`` in a
    citizen's description) gets a leading single quote, so it stays text; numbers, dates and
    every other text pass as they are."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def csv_response(
    filename: str,
    header: Sequence[str],
    chunks: AsyncIterator[Sequence[Any]],
    to_row: Callable[[Any], Sequence[object]],
) -> StreamingResponse:
    """A CSV download written chunk by chunk as the rows arrive: memory stays that of one
    chunk however many rows there are. UTF-8 with a byte order mark, so that spreadsheet
    programs read the umlauts right. Text that would start a formula is neutralised
    (:func:`spreadsheet_safe`)."""

    async def body() -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")
        writer.writerow(header)
        async for chunk in chunks:
            writer.writerows([spreadsheet_safe(c) for c in to_row(r)] for r in chunk)
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue().encode()

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


class Format(StrEnum):
    JSON = "json"
    XML = "xml"


def _fill(parent: Element, value: Any, item_names: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            _fill(SubElement(parent, key), child, item_names)
    elif isinstance(value, list):
        item = item_names.get(parent.tag, "item")
        for child in value:
            _fill(SubElement(parent, item), child, item_names)
    elif value is None:
        return
    elif isinstance(value, bool):
        parent.text = "true" if value else "false"
    else:
        # Rows stored before such characters were refused must not break every client's parse.
        parent.text = xml_safe(str(value))


def render(
    fmt: Format,
    content: Any,
    *,
    root: str,
    item: str,
    status_code: int = 200,
    item_names: dict[str, str] | None = None,
) -> Response:
    """``content`` (a list of ``item``s, or a dict) as JSON, or as XML under ``<root>``."""
    if fmt is Format.JSON:
        # GeoReport v2 names the charset; Starlette adds one only to text/* types.
        return JSONResponse(
            content, status_code=status_code, media_type="application/json; charset=utf-8"
        )
    names = {
        root: item,
        "attributes": "attribute",
        "values": "value",
        "endpoints": "endpoint",
        "formats": "format",
        **(item_names or {}),
    }
    element = Element(root)
    if isinstance(content, list):
        for entry in content:
            _fill(SubElement(element, item), entry, names)
    else:
        for key, value in content.items():
            _fill(SubElement(element, key), value, names)
    body = tostring(element, encoding="utf-8", xml_declaration=True)
    return Response(body, status_code=status_code, media_type="text/xml; charset=utf-8")


def errors(fmt: Format, status: int, *descriptions: str) -> Response:
    """Open311 errors: always a list of ``{code, description}``, one per problem."""
    return render(
        fmt,
        [{"code": status, "description": d} for d in descriptions],
        root="errors",
        item="error",
        status_code=status,
    )
