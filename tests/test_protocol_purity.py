"""`protocol/` must stay importable without the server: no I/O frameworks, no event loop."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROTOCOL_DIR = Path(__file__).resolve().parents[1] / "protocol"
FORBIDDEN = frozenset(
    {
        "sqlalchemy",
        "litestar",
        "asyncpg",
        "aiosqlite",
        "uvicorn",
        "redis",
        "sync_server",
        "asyncio",
        "httpx",
        "anyio",
    }
)


def imported_top_level_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def protocol_sources() -> list[Path]:
    return sorted(PROTOCOL_DIR.rglob("*.py")) if PROTOCOL_DIR.is_dir() else []


@pytest.mark.parametrize(
    "source", protocol_sources(), ids=lambda path: str(path.relative_to(PROTOCOL_DIR))
)
def test_protocol_module_imports_no_io_framework(source: Path) -> None:
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    assert imported_top_level_names(tree) & FORBIDDEN == set()


def test_checker_catches_forbidden_imports() -> None:
    tree = ast.parse("import asyncio.tasks\nfrom sqlalchemy import text\nfrom . import wire\n")
    assert imported_top_level_names(tree) & FORBIDDEN == {"asyncio", "sqlalchemy"}
