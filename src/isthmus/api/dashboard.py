"""The dashboard ``isthmus serve`` shows at ``/``: plain pages over the HTTP API.

One HTML shell (``static/index.html``), one vanilla JavaScript file and one CSS file: no
framework, no build step, nothing fetched from anywhere but this server. The shell is served
at every page's path and the script draws the page from ``location.pathname``:

- ``/``: the overview (what is running now with progress bars and rows/s, the jobs, each
  entity's newest migration checkpoint), polled every 1.5 s;
- ``/jobs/{name}``: a job (its definition, last run, errors, a throughput chart and its
  checkpoints over time) with run/pause/resume/cancel;
- ``/review``: the review queue, both versions side by side, resolved with a click;
- ``/reports`` and ``/reports/{id}``: validation runs, pass/fail per entity and type, and a
  run's discrepancies (the self-contained HTML report is ``/api/reports/{id}/html``).

Everything the script shows arrives as JSON and is inserted as text (``textContent``,
``createElement``), never parsed as markup; the pages carry a Content-Security-Policy that
allows only this origin's own script, style and API.

``create_app`` calls :func:`register` after every API route is in place, so nothing here can
shadow ``/api``, ``/metrics`` or the docs.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/static"
PAGES = ("/", "/review", "/reports", "/reports/{report_id}", "/jobs/{name:path}")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
NO_CACHE = {"Cache-Control": "no-cache"}  # always revalidated: an upgrade shows at once


class _Static(StaticFiles):
    """The dashboard's script, style and icon, revalidated on every load and never sniffed."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update({**NO_CACHE, "X-Content-Type-Options": "nosniff"})
        return response


def register(app: FastAPI) -> None:
    """Serve the pages (the same shell at each page's path) and ``/static``."""
    shell = (STATIC_DIR / "index.html").read_bytes()

    def page() -> Response:
        return Response(
            shell,
            media_type="text/html; charset=utf-8",
            headers={**SECURITY_HEADERS, **NO_CACHE},
        )

    for path in PAGES:
        app.add_api_route(path, page, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(STATIC_PREFIX, _Static(directory=STATIC_DIR), name="dashboard")
