"""Intake's serving process leaves out what only a configured option or a command needs."""

from __future__ import annotations

import subprocess
import sys

OPTIONAL = ("jwt", "cryptography", "httpx", "rich", "alembic")


def test_the_server_without_oidc_or_geocoder_leaves_their_libraries_out() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, intake.cli, intake.bootstrap;"
            f"print(' '.join(m for m in {OPTIONAL!r} if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert loaded == []
