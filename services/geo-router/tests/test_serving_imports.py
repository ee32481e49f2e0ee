"""The serving process imports what serving needs: the importer's GIS file libraries, and the
migrations' GeoAlchemy2 and Alembic, load only in the commands that use them."""

from __future__ import annotations

import subprocess
import sys

IMPORTER_ONLY = ("pyogrio", "pyproj", "yaml", "tqdm", "geoalchemy2", "alembic")


def test_the_server_leaves_the_importers_libraries_out() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, geo_router.cli, geo_router.bootstrap;"
            f"print(' '.join(m for m in {IMPORTER_ONLY!r} if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert loaded == []
