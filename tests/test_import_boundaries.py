"""No service imports another service's package; shared/ imports no service."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def violations(package: Path, allowed_service: str | None) -> list[str]:
    found = []
    for path in package.rglob("*.py"):
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "services" and len(parts) > 1 and parts[1] != allowed_service:
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    return found


def test_services_import_only_themselves_and_shared() -> None:
    services = [p for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists()]
    assert len(services) == 7
    problems = [v for service in services for v in violations(service, service.name)]
    assert problems == []


def test_shared_imports_no_service() -> None:
    assert violations(ROOT / "shared", None) == []


def test_the_check_catches_a_cross_service_import(tmp_path: Path) -> None:
    rogue = tmp_path / "rogue"
    rogue.mkdir()
    (rogue / "api.py").write_text("from services.members.models import Member\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert violations(rogue, "rogue") == ["rogue/api.py imports services.members.models"]
    finally:
        ROOT = saved
