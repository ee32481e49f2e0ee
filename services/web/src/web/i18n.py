"""German by default, English by the browser's Accept-Language or the visible switch (a cookie).

Each part of web keeps its own catalogue in ``web/messages/<part>.py``: a dict ``MESSAGES`` of
key → (German, English). Every module there is loaded, so a part adds its words without
touching another's file; a key defined twice is an error at start-up, not a silent override.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Literal

from starlette.requests import Request

import web.messages

Lang = Literal["de", "en"]
LANGUAGES: tuple[Lang, ...] = ("de", "en")
DEFAULT: Lang = "de"
COOKIE = "lang"
Catalogue = Mapping[str, tuple[str, str]]


def load_catalogues() -> dict[str, tuple[str, str]]:
    merged: dict[str, tuple[str, str]] = {}
    for module in pkgutil.iter_modules(web.messages.__path__):
        catalogue: Catalogue = importlib.import_module(f"web.messages.{module.name}").MESSAGES
        if twice := merged.keys() & catalogue.keys():
            raise RuntimeError(f"message keys defined twice ({module.name}): {sorted(twice)}")
        merged.update(catalogue)
    return merged


MESSAGES = load_catalogues()


def language(request: Request) -> Lang:
    """The switch's cookie first, then the browser's preference (by q), else German."""
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return negotiate(request.headers.get("accept-language", ""))


def negotiate(accept_language: str) -> Lang:
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, position, tag.strip().lower()[:2]))
    for negative_q, _, primary in sorted(ranked):
        if negative_q < 0 and primary in LANGUAGES:
            return primary
    return DEFAULT


class Translator:
    """``t("key", name=...)``: the message in the page's language, with ``str.format`` fields."""

    def __init__(self, lang: Lang, **common: object) -> None:
        self.lang = lang
        self._index = LANGUAGES.index(lang)
        #: Fields every message may use: the page's city (``{city}``: "Köln", ``{city_name}``:
        #: "Stadt Köln").
        self._common = common

    def has(self, key: str) -> bool:
        return key in MESSAGES

    def __call__(self, key: str, /, **fields: object) -> str:
        text = MESSAGES[key][self._index]
        if fields or (self._common and "{city" in text):
            return text.format(**(self._common | fields))
        return text
