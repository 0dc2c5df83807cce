"""Importing the app's IndexedDB exports into a Touchline server (``touchline-import``).

:func:`~touchline_import.sources.read_source` reads and recognises an export,
:func:`~touchline_import.mapping.plan_import` maps its rows to records (pure), and
:func:`~touchline_import.upload.upload` pushes the new ones through the sync protocol as the
user's import device, so running it again adds nothing.
"""

from touchline_import.mapping import ImportPlan, ImportRecord, plan_import
from touchline_import.report import ImportReport, Rejection
from touchline_import.sources import NotAnExport, Source, read_source

__all__ = [
    "ImportPlan",
    "ImportRecord",
    "ImportReport",
    "NotAnExport",
    "Rejection",
    "Source",
    "plan_import",
    "read_source",
]
