"""The package layering the developers' guide fixes: chain/, storage/, learning/ and
contribution/ import neither agent/ nor casestudy/; agent/ does not import casestudy/.

Read from the sources with `ast` (every import statement, at any depth, type-checking ones
included), so a lazy import inside a function is caught as well as a top-level one.
"""

import ast
from pathlib import Path

import edgetune

PACKAGE = Path(edgetune.__file__).parent
# package -> the edgetune packages it must never import
FORBIDDEN = {
    "chain": ("agent", "casestudy"),
    "storage": ("agent", "casestudy"),
    "learning": ("agent", "casestudy"),
    "contribution": ("agent", "casestudy"),
    "agent": ("casestudy",),
}


def imported_modules(source: Path, root: Path = PACKAGE) -> set[str]:
    """Absolute names of every module `source` (a file under the edgetune package at `root`)
    imports, relative imports resolved."""
    tree = ast.parse(source.read_text(), filename=str(source))
    parts = ("edgetune", *source.relative_to(root).with_suffix("").parts)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(parts[: len(parts) - node.level])
                names.add(f"{base}.{node.module}" if node.module else base)
            else:
                names.add(node.module or "")
    return names


def layering_violations(root: Path = PACKAGE) -> list[str]:
    """'file imports module' for every import that crosses `FORBIDDEN` under `root`."""
    out = []
    for package, banned in FORBIDDEN.items():
        for source in sorted((root / package).rglob("*.py")):
            for name in sorted(imported_modules(source, root)):
                if any(
                    name == f"edgetune.{b}" or name.startswith(f"edgetune.{b}.") for b in banned
                ):
                    out.append(f"{source.relative_to(root)} imports {name}")
    return out


def test_lower_packages_never_import_upper_ones() -> None:
    assert layering_violations() == []


def test_the_check_sees_imports_at_any_depth(tmp_path: Path) -> None:
    # A lazy import in a function body and a relative one both count as crossings.
    for package in FORBIDDEN:
        (tmp_path / package).mkdir()
    (tmp_path / "agent" / "lazy.py").write_text(
        "def f():\n    from edgetune.casestudy.arms import SHORT_ANSWERS\n"
    )
    (tmp_path / "learning" / "rel.py").write_text("from ..agent import learner\n")
    (tmp_path / "chain" / "fine.py").write_text("import edgetune.storage\n")
    assert layering_violations(tmp_path) == [
        "learning/rel.py imports edgetune.agent",
        "agent/lazy.py imports edgetune.casestudy.arms",
    ]
