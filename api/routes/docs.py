"""The OpenAPI schema (behind API_TOKEN) and the /docs and /redoc shells (open, no data).

FastAPI's own docs pages fetch the schema without a header and load Swagger UI and ReDoc
from a CDN. These shells are static files of the package: the schema and every request
they make carry the token (api/static/docs.js), and Swagger UI and ReDoc come from the
fastapi-offline wheel, so the docs work on a machine with no way out.
"""

from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from api.deps import require_token

STATIC = Path(str(files("api") / "static"))
VENDORED = Path(str(files("fastapi_offline") / "static"))
# Every file the shells load, by the name they use: nothing else is served from disk.
ASSETS = {
    "docs.js": STATIC / "docs.js",
    "docs.css": STATIC / "docs.css",
    "swagger-ui-bundle.js": VENDORED / "swagger-ui-bundle.js",
    "swagger-ui.css": VENDORED / "swagger-ui.css",
    "redoc.standalone.js": VENDORED / "redoc.standalone.js",
    "favicon.png": VENDORED / "favicon.png",
}

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json", dependencies=[Depends(require_token)])
async def openapi(request: Request) -> dict[str, Any]:
    """The schema, with the bearer token when API_TOKEN is set."""
    schema: dict[str, Any] = request.app.openapi()
    return schema


# One shell for both viewers: what differs is the viewer's script and styles.
SHELL = Template((STATIC / "shell.html").read_text())
VIEWERS = {
    "swagger": SHELL.substitute(
        viewer="swagger", viewer_name="Swagger UI", viewer_script="swagger-ui-bundle.js",
        viewer_styles='<link rel="stylesheet" href="docs/assets/swagger-ui.css">'),
    "redoc": SHELL.substitute(
        viewer="redoc", viewer_name="ReDoc", viewer_script="redoc.standalone.js",
        viewer_styles=""),
}


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui() -> HTMLResponse:
    """Swagger UI's shell: asks for the token when the schema answers 401."""
    return HTMLResponse(VIEWERS["swagger"])


@router.get("/redoc", response_class=HTMLResponse)
async def redoc() -> HTMLResponse:
    """ReDoc's shell, as /docs."""
    return HTMLResponse(VIEWERS["redoc"])


@router.get("/docs/assets/{name}")
async def asset(name: str) -> FileResponse:
    """The shells' scripts, styles and icon."""
    return static_file(ASSETS, name)


def static_file(assets: Mapping[str, Path], name: str) -> FileResponse:
    """One of a page's own files by the name it uses; 404 for any other name."""
    path = assets.get(name)
    if path is None:
        raise HTTPException(404, f"no asset {name!r}")
    # revalidated on every load (ETag): an upgrade never leaves a stale script behind
    return FileResponse(path, headers={"Cache-Control": "no-cache"})
