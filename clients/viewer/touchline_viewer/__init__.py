"""The family viewer: the live match page behind a share link, and its streaming overlay.

Plain HTML, CSS and JavaScript with no build step and no third-party code, served by the sync
server itself (``sync_server.routes.viewer_pages``): a parent's phone loads a few kilobytes from
the club's own server and nothing from anywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["ASSETS", "STATIC"]

STATIC: Final = Path(__file__).parent / "static"
ASSETS: Final = ("watch.js", "watch.css", "overlay.css", "icon.svg")
"""The files served under ``/watch/assets/``; the pages themselves are rendered per request."""
