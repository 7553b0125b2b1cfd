"""The Migration page in the Airflow UI: a FastAPI app the api-server mounts at :data:`PREFIX`,
shown in the UI's navigation through an external view.

The app serves behind Airflow's own login: every route needs a user the auth manager accepts
(the UI's session cookie, or a bearer token) with access to plugin views; a browser without a
session is sent to the login page and back. It reads the checkpoints through the provider's
hooks (:class:`MigrationHook`) on every request, so the page is as fresh as the checkpoints;
what it shows is gathered in :mod:`paymigrate.migration.overview` and drawn in
:mod:`paymigrate.migration.page`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import requires_access_view
from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from paymigrate.migration import history, overview, page
from paymigrate.provider.hooks import MigrationHook

log = logging.getLogger(__name__)

PREFIX = "/paymigrate"
_allowed = [Depends(requires_access_view(AccessView.PLUGINS))]


def ui_base() -> str:
    """The UI's path prefix, from ``[api] base_url`` (empty when it is served at the root)."""
    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def read_overview(hook: MigrationHook) -> overview.Overview:
    try:
        config = hook.config
    except Exception as exc:  # noqa: BLE001 - the page says it, rather than an error page
        log.warning("contract not readable for the Migration page: %s", exc)
        return overview.Overview(env=hook.env, read_at=datetime.now(UTC), lock=None,
                                 mode=None, active_writer=None, phases_done=(),
                                 problems=(f"the contract (Parameter Store /migration/{hook.env}/) not "
                                           f"readable: {type(exc).__name__}: {str(exc)[:200]}",))
    return overview.read(hook.checkpoints(), config)


def make_app() -> FastAPI:
    app = FastAPI(title="paymigrate Migration page", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def to_login(request: Request, exc: HTTPException) -> Response:
        # A browser with no (or an expired) session goes to the login page and comes back.
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            login = f"{ui_base()}/auth/login?next={quote(str(request.url), safe='')}"
            return RedirectResponse(login, status_code=303)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.get("/", response_class=HTMLResponse, dependencies=_allowed)
    def migration_page() -> HTMLResponse:
        return HTMLResponse(page.render(read_overview(MigrationHook()), ui_base=ui_base()),
                            headers={"Cache-Control": "no-store"})

    @app.get("/overview.json", dependencies=_allowed)
    def overview_json() -> dict[str, Any]:
        from paymigrate.migration.plan import summary

        return summary(read_overview(MigrationHook()))

    @app.get("/report", dependencies=_allowed)
    def report(key: str) -> JSONResponse:
        if not history.REPORT_KEY.match(key):
            raise HTTPException(400, f"report key {key!r} is not a validation report's key")
        doc = MigrationHook().checkpoints().get_doc(key)
        if doc is None:
            raise HTTPException(404, f"no report {key}")
        return JSONResponse(doc)

    return app


class MigrationPagePlugin(AirflowPlugin):
    name = "paymigrate"
    fastapi_apps = [{"name": "paymigrate-migration", "app": make_app(), "url_prefix": PREFIX}]
    external_views = [{"name": "Migration", "href": f"{PREFIX}/", "url_route": "migration",
                       "destination": "nav", "nav_top_level": True}]
