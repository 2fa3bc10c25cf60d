"""docs/architecture.md and the README's layout describe the tree as it is."""

from __future__ import annotations

import re

from conftest import ROOT

PACKAGE = ROOT / "ugr_experiments"


def _modules() -> set[str]:
    """Every module of the package, as ``folder/name.py`` (``name.py`` at the top level)."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py" and "paper_tables" not in path.parts:
            found.add(path.relative_to(PACKAGE).as_posix())
    return found


def test_architecture_names_every_module_and_only_existing_ones() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set()
    for folder, body in re.findall(r"\*\*`([a-z_/]+)`[^*]*\*\*(.*?)(?=\n\n|\Z)", text, re.S):
        prefix = "" if folder == "ugr_experiments/" else folder
        names = re.findall(r"`([a-z_]+\.py)`", body)
        named |= {prefix + n for n in names if n != "__init__.py"}
    assert named == _modules()
    for folder in {m.split("/")[0] for m in _modules() if "/" in m} | {"analysis/paper_tables"}:
        assert (PACKAGE / folder).is_dir() and f"`{folder.split('/')[-1]}" in text


def test_readme_layout_lists_every_package_folder() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") : readme.index("## Tests")]
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    listed = set(re.findall(r"^  ([a-z_]+)/", layout, re.M))
    assert listed == folders
    for name in ("train.py", "conf/", "scripts/", "data_prep/", "tests/", "docs/"):
        assert name in layout and (ROOT / name.rstrip("/")).exists()
