"""Touchline sync server: the Litestar service around the pure `protocol` package."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("touchline")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
