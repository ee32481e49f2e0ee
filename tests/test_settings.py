"""Settings: secrets stay out of reprs and logs, closed choices refuse anything else."""

from __future__ import annotations

import logging

import pytest
from pydantic import BaseModel, ValidationError

from geo_router.settings import GeoRouterSettings
from intake.settings import IntakeSettings
from notifier.settings import NotifierSettings
from web.settings import WebSettings

SECRET = "do-not-show-this-secret-anywhere-0123456789"
DATABASE_PASSWORD = "database-password-not-to-show"
DATABASE_URL = f"postgresql+asyncpg://mm:{DATABASE_PASSWORD}@db:5432/mm"


def settings_with_secrets() -> list[BaseModel]:
    return [
        IntakeSettings(database_url=DATABASE_URL, api_keys=[SECRET], reporter_token_secret=SECRET),
        GeoRouterSettings(database_url=DATABASE_URL),
        NotifierSettings(
            database_url=DATABASE_URL,
            smtp_password=SECRET,
            webhook_secret=SECRET,
            ops_token=SECRET,
        ),
        WebSettings(secret_key=SECRET, oidc_client_secret=SECRET),
    ]


@pytest.mark.parametrize("settings", settings_with_secrets(), ids=lambda s: type(s).__name__)
def test_no_secret_shows_in_the_settings_repr_or_a_log(
    settings: BaseModel, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s / %r", settings, settings)
    for shown in (repr(settings), str(settings), caplog.text):
        assert SECRET not in shown
        assert DATABASE_PASSWORD not in shown
    assert SECRET not in settings.model_dump_json()


@pytest.mark.parametrize(
    ("settings", "field", "value"),
    [
        (NotifierSettings, "smtp_security", "ssl"),
        (NotifierSettings, "log_level", "verbose"),
        (IntakeSettings, "endpoint_type", "staging"),
        (WebSettings, "log_level", "info"),
    ],
)
def test_a_closed_choice_refuses_other_values(
    settings: type[BaseModel], field: str, value: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        settings(**{field: value})
