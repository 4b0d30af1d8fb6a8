"""What the gateway serves to a browser: the web page, its assets, the option descriptions and
the API documentation, all from this process (nothing from a CDN).

* ``/``, ``/live`` and ``/jobs/{id}`` return the page (``static/index.html``) to anyone: it holds no data
  and signs in with a key. The page reads the view (and the job id) from its address, so a job's permalink
  shows its progress or result after a reload, and ``/live`` opens the camera view.
* ``/static/...`` the page's ES modules, CSS and vendored libraries (``static/vendor``).
* ``/v1/options`` (signed in) the job options with their real defaults, bounds and help (``options.py``).
* ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) with the assets that the ``fastapi-offline``
  package ships, served under ``/docs-assets/``. The app must be created with
  ``docs_url=None, redoc_url=None`` so these replace FastAPI's CDN-based pages. ReDoc's script
  would fetch its maker's logo from a CDN; ``/redoc/redoc.standalone.js`` serves it with that one
  address replaced by an empty inline image.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import fastapi_offline
from fastapi import Depends, FastAPI, HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from services.common.settings import Settings

from ..jobs.manifest import is_job_id
from .authentication import require_caller
from .options import OptionsView, describe_options
from .problems import AUTH_ERRORS

STATIC = Path(__file__).resolve().parent / "static"
DOCS_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
PAGE = STATIC / "index.html"
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
EMPTY_SVG = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/%3E"


@lru_cache(maxsize=1)
def offline_redoc_script() -> bytes:
    """ReDoc's standalone bundle with its only off-machine fetch (a logo) made inline."""
    return (DOCS_ASSETS / "redoc.standalone.js").read_bytes().replace(REDOC_CDN_LOGO.encode(), EMPTY_SVG.encode())


def page_html(settings: Settings) -> str:
    """The page, telling its scripts how callers sign in (``<body data-auth="...">``): ``on`` (a key),
    ``oidc`` (a key, or the token a proxy in front adds to every request), ``off``."""
    mode = "off" if not settings.auth else "oidc" if settings.oidc_issuer else "on"
    return PAGE.read_text().replace("<body>", f'<body data-auth="{mode}">', 1)


def install_web(app: FastAPI, settings: Settings, api_prefix: str = "/v1") -> None:
    """Add the page, its assets, ``GET {api_prefix}/options`` and the offline docs to ``app``."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    options = describe_options(settings)

    @app.get(f"{api_prefix}/options", response_model=OptionsView, tags=["jobs"],
             summary="Job options with their defaults, bounds and help; upload limits",
             dependencies=[Depends(require_caller)],
             responses=AUTH_ERRORS)
    async def job_options() -> OptionsView:
        return options

    html = page_html(settings)

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    @app.get("/live", include_in_schema=False)
    async def live_page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    @app.get("/jobs/{job_id}", include_in_schema=False)
    async def job_page(job_id: str) -> HTMLResponse:
        if not is_job_id(job_id):
            raise HTTPException(404, f"no job {job_id}")
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title}: API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    @app.get("/redoc/redoc.standalone.js", include_in_schema=False)
    async def redoc_script() -> Response:
        return Response(offline_redoc_script(), media_type="text/javascript")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title}: API",
                              redoc_js_url="/redoc/redoc.standalone.js",
                              redoc_favicon_url="/docs-assets/favicon.png", with_google_fonts=False)
