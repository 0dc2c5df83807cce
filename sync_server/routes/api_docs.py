"""The API explorer at /schema, with Swagger UI's assets served by the app itself.

Litestar's default page loads Swagger UI from a CDN, which leaves a blank page on a laptop at
a pitch with no signal; the assets ship in a wheel instead.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle  # type: ignore[import-untyped]
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router

ASSETS_PATH = "/schema-assets"
_ASSETS_DIR = Path(swagger_ui_bundle.swagger_ui_path)


def assets_router() -> Router:
    return create_static_files_router(
        path=ASSETS_PATH, directories=[_ASSETS_DIR], include_in_schema=False
    )


def swagger_plugin() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        path="/",
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
    )
