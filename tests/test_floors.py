"""The package's folders are its floors (docs/architecture.md): a module imports only from its
own floor or the floors below, and no modules import each other in a circle. Every import
counts, the lazy ones inside functions and those under TYPE_CHECKING too: a circle that only
the type checker sees still ties two modules together for a reader."""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
PACKAGE = os.path.join(ROOT, "ptfast")
#: from the ground up
FLOORS = ["scan", "foundation", "decide", "channels", "act", "commands"]


def modules(suffixes=(".py",)) -> dict:
    """Dotted module name -> source path, for every module of the package (with ".pyi": the
    compiled core too, by its stub)."""
    found = {}
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(suffixes):
                path = os.path.join(directory, name)
                relative = os.path.splitext(os.path.relpath(path, ROOT))[0].replace(os.sep, ".")
                found[relative.removesuffix(".__init__")] = path
    return found


def imports_of(path: str, known: dict) -> set:
    """The package's modules that the module at ``path`` imports (a name imported from a
    package that is itself a module counts as that module)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}:{node.lineno}: a relative import"
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                named.add(submodule if submodule in known else node.module)
    return {name for name in named if name in known and name != "ptfast"}


def graph() -> dict:
    known = modules((".py", ".pyi"))
    return {name: imports_of(path, known) for name, path in modules().items()}


def floor_of(module: str) -> int:
    parts = module.split(".")
    return FLOORS.index(parts[1]) if len(parts) > 1 and parts[1] in FLOORS else len(FLOORS)


def test_every_module_stands_on_a_floor():
    loose = [name for name in modules() if name.count(".") == 1
             and name not in ("ptfast.__main__",) and name.split(".")[1] not in FLOORS]
    assert loose == []


def test_no_import_runs_up_a_floor():
    upward = [f"{importer} -> {imported}" for importer, imported_set in graph().items()
              for imported in imported_set if floor_of(imported) > floor_of(importer)]
    assert upward == []


def test_no_modules_import_each_other_in_a_circle():
    edges = graph()
    circles = []
    state: dict = {}          # module -> "open" while on the walk, "done" after

    def walk(module: str, trail: list) -> None:
        state[module] = "open"
        for imported in sorted(edges.get(module, ())):
            if state.get(imported) == "open":
                circles.append(" -> ".join(trail[trail.index(imported):] + [imported]))
            elif imported not in state:
                walk(imported, trail + [imported])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            walk(module, [module])
    assert circles == []


def test_every_package_folder_is_installed():
    """pyproject lists the packages by name: a folder of modules left out of it is missing from
    the wheel, though every test run from the checkout passes."""
    tomllib = pytest.importorskip("tomllib")        # Python 3.11
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        listed = set(tomllib.load(handle)["tool"]["setuptools"]["packages"])
    folders = {os.path.relpath(directory, ROOT).replace(os.sep, ".")
               for directory, _, files in os.walk(PACKAGE) if "__init__.py" in files}
    assert folders - listed == set()
