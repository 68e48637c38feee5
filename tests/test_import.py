"""`import encdec` imports no framework, and the lazy classes name the extra to install."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

FRAMEWORKS = ("torch", "tensorflow", "jax", "flax", "keras")


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return result.stdout


def test_import_encdec_imports_no_framework():
    out = _run(
        f"""
        import json, sys
        import encdec, encdec.config, encdec.weights.names
        print(json.dumps([m for m in {FRAMEWORKS!r} if m in sys.modules]))
        """
    )
    assert json.loads(out) == []


def test_missing_framework_names_the_extra():
    # Pretending torch is not installed: find_spec reports it absent.
    out = _run(
        """
        import importlib.util
        real = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name == "torch" else real(name, *a)
        import encdec
        try:
            encdec.EncoderDecoderModel
        except encdec.MissingFrameworkError as e:
            print(e)
        """
    )
    assert "pip install 'encdec[torch]'" in out


def test_unknown_attribute_is_an_attribute_error():
    out = _run(
        """
        import encdec
        try:
            encdec.NoSuchModel
        except AttributeError as e:
            print("AttributeError", e)
        """
    )
    assert out.startswith("AttributeError")


# -- the package's own structure ------------------------------------------------------------

import ast  # noqa: E402
import pathlib  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "encdec"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.Module):
    """Import statements run when the module is imported: top level, and inside module-level
    if/try/with blocks (not functions or classes, not `if TYPE_CHECKING:`)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                stack.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody + [n for h in node.handlers for n in h.body])
        elif isinstance(node, ast.With):
            stack.extend(node.body)


def import_graph(root: pathlib.Path = ROOT, package: str = "encdec") -> dict[str, set[str]]:
    """{module: package modules it imports at module level}, from the source alone (nothing imported).

    `from .x import name` counts as importing `x`, and `x.name` too when that is a module. A
    package's parent being initialised first is Python's own order, not an edge.
    """
    files = sorted((root / package).rglob("*.py"))
    modules = {}
    for path in files:
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, is_package)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        edges = set()
        for node in _module_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [source] + [f"{source}.{alias.name}" for alias in node.names]
            for target in targets:
                if target in modules and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_no_import_cycle_among_the_packages_modules():
    graph = import_graph()
    assert "encdec.config" in graph and graph["encdec"], "the import graph found no modules"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_sees_a_cycle(tmp_path):
    pkg = tmp_path / "encdec"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("import encdec.c\n")
    (pkg / "c.py").write_text("def f():\n    from . import a\n")  # inside a function: not an edge
    assert find_cycle(import_graph(tmp_path)) is None
    (pkg / "c.py").write_text("try:\n    from .a import x\nexcept ImportError:\n    pass\n")
    assert find_cycle(import_graph(tmp_path)) == ["encdec.a", "encdec.sub.b", "encdec.c", "encdec.a"]


def _setuptools_find_rule() -> dict:
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        setuptools_table = tomllib.load(f)["tool"]["setuptools"]
    return setuptools_table


def test_the_wheel_holds_no_top_level_package_but_encdec():
    from setuptools import find_packages

    table = _setuptools_find_rule()
    find = table.get("packages", {}).get("find", {})
    include = find.get("include", ["*"])
    stray = [pattern for pattern in include if pattern.split(".")[0].rstrip("*") != "encdec"]
    assert not stray, f"pyproject's packages.find includes {stray}; expected only encdec and its subpackages"
    packages = find_packages(where=str(ROOT / find.get("where", ["."])[0]), include=include,
                             exclude=find.get("exclude", ()))
    assert "encdec" in packages
    tops = sorted({name.split(".")[0] for name in packages})
    assert tops == ["encdec"], f"the wheel would hold the top-level packages {tops}; expected only encdec"
    data = sorted(key for key in table.get("package-data", {}) if key.split(".")[0] not in ("encdec", "*"))
    assert not data, f"package-data for {data}, outside encdec"
