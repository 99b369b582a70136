"""The package's layers (docs/architecture.md): nothing imports upward. training/ and grading/ at the bottom;
rollout/, rewards/, data/, policy/, grpo/, eval/ above them; producer/ above those; module.py above producer/;
cli/ and callbacks/ on top. Read from the source's import statements, so a new upward import fails here."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

LAYERS = {
    "errors": 0, "training": 1, "grading": 1,
    "rollout": 2, "rewards": 2, "data": 2, "policy": 2, "grpo": 2, "eval": 2,
    "producer": 3, "module": 4, "cli": 5, "callbacks": 5,
}


def _part(dotted: str) -> str | None:
    """``r1lit.grpo.losses`` -> ``grpo``; None for ``r1lit`` itself."""
    parts = dotted.split(".")
    return parts[1] if parts[0] == "r1lit" and len(parts) > 1 else None


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [name for name in found if name.startswith("r1lit.")]


def test_every_folder_has_a_layer():
    folders = {p.stem if p.is_file() else p.name for p in (ROOT / "r1lit").iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert folders == set(LAYERS)


def test_nothing_imports_upward():
    upward = []
    for path in sorted((ROOT / "r1lit").rglob("*.py")):
        own = _part(".".join(path.relative_to(ROOT).with_suffix("").parts))
        if own is None or own == "__init__":
            continue
        for module in _imports(path):
            other = _part(module)
            if other is not None and LAYERS[other] > LAYERS[own]:
                upward.append(f"{path.relative_to(ROOT)} imports {module}")
    assert upward == []


def test_at_most_four_files_at_the_top():
    assert len(list((ROOT / "r1lit").glob("*.py"))) <= 4
