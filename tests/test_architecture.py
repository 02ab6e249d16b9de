"""The layout holds: which room may import which (docs/architecture.md), no import loops, a small
package root, and a front door that imports nothing heavy.

Imports are read from the source (every `import` and `from ... import`, also those inside
functions), so a lazy import that runs back up the floors is caught as well.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "photosearch"

# Each room and the rooms it may import, lowest floor first: the table of docs/architecture.md.
# "progress" is the root's terminal progress bar, a leaf anyone may use.
ALLOWED: dict[str, set[str]] = {
    "progress": set(),
    "storage": set(),
    "faces": set(),
    "index": {"storage", "faces", "progress"},
    "search": {"storage", "faces", "index"},
    "people": {"storage", "faces", "index", "search"},
    "evaluate": {"storage", "faces", "index", "search", "progress"},
    "aws": {"storage", "faces", "index", "search"},
    "app": {"storage", "faces", "index", "search", "people", "aws"},
    "cli": {"storage", "faces", "index", "search", "people", "evaluate", "aws", "app", "progress"},
}
ROOT_MODULES = {"__init__", "__main__", "progress"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room_of(module: str) -> str:
    """'photosearch.faces.engine' -> 'faces'; the front door is 'photosearch'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else "photosearch"


def imports_of(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The photosearch modules (or names) `path` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from photosearch.search import query` imports the module photosearch.search.query;
            # `from photosearch import __version__` reads the front door's version only.
            if node.module != "photosearch":
                found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "photosearch" or name.startswith("photosearch.")}


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_package_root_holds_at_most_six_modules() -> None:
    root = {path.stem for path in PACKAGE.glob("*.py")}
    assert root == ROOT_MODULES and len(root) <= 6


def test_every_room_is_in_the_table_and_the_table_has_no_loop() -> None:
    rooms = {room_of(name) for name in MODULES} - {"photosearch"}
    assert rooms <= set(ALLOWED), f"rooms missing from ALLOWED: {rooms - set(ALLOWED)}"
    order = list(ALLOWED)  # lowest floor first: each room imports only rooms before it
    for room, allowed in ALLOWED.items():
        assert all(order.index(other) < order.index(room) for other in allowed), room


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_only_down_the_floors(module: str) -> None:
    room = room_of(module)
    imported = imports_of(MODULES[module])
    if room == "photosearch":  # the front door (and __main__) may import any room
        return
    wrong = set()
    for name in imported:
        if name == "photosearch.__version__":
            continue  # the version number, defined in the front door before anything else
        target = room_of(name)
        if name == "photosearch" or target == "photosearch":
            wrong.add(name)  # rooms never import the front door, which imports them
        elif target != room and target in ALLOWED and target not in ALLOWED[room]:
            wrong.add(name)
    assert not wrong, f"{module} ({room}/) imports {sorted(wrong)}; allowed: {ALLOWED[room]}"


def test_no_import_loops_at_module_level() -> None:
    """Module-level imports form no cycle (imports inside functions run later, on use)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        graph[module] = {name for name in imports_of(path, top_level_only=True) if name in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if target == module or state.get(target) == 2:
                continue
            if state.get(target) == 1:
                pytest.fail(f"import loop: {' -> '.join([*path[path.index(target) :], target])}")
            visit(target, [*path, target])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])


def test_every_public_module_declares_its_names() -> None:
    missing = [
        name
        for name, path in MODULES.items()
        if not path.stem.startswith("_")
        and path.name != "page.py"  # the Streamlit script: run, never imported
        and "__all__" not in path.read_text()
    ]
    assert not missing, f"modules without __all__: {missing}"


def test_the_front_door_names_resolve_and_import_nothing_heavy() -> None:
    """`import photosearch` loads none of numpy, torch or pyarrow, and the command line's module
    neither torch nor streamlit (models and the app load on use); every name of
    photosearch.__all__ resolves to what its room defines."""
    heavy = "sorted(m for m in ('numpy', 'torch', 'pyarrow', 'streamlit') if m in sys.modules)"
    code = (
        f"import sys, photosearch\nprint({heavy})\n"
        f"import photosearch.cli.main\nprint({heavy})\n"
        "print(all(getattr(photosearch, n) is not None for n in photosearch.__all__))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == "[]", out
    assert "torch" not in out[1] and "streamlit" not in out[1], out
    assert out[2] == "True", out
    import photosearch
    from photosearch.faces.engine import FaceEngine
    from photosearch.search.query import find_matches

    assert photosearch.FaceEngine is FaceEngine and photosearch.find_matches is find_matches
    with pytest.raises(AttributeError):
        photosearch.no_such_name  # noqa: B018
