from __future__ import annotations

import ast
from pathlib import Path

import crm_bridge

FORBIDDEN = ("dialer", "pbx", "acd")


def test_crm_bridge_imports_nothing_from_dialer_pbx_or_acd() -> None:
    root = Path(crm_bridge.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
