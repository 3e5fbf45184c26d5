"""The layout of the Python side (worker/python/pyproject.toml) holds:

- the payload's PYTHONPATH (worker/python/src) holds the three stoker_* packages and nothing
  else, so no name a user's script imports (`fire`, `tests`, ...) can come from stoker;
- pyproject.toml declares exactly those packages and the test layout that discovery uses;
- the imports between stoker's modules form no cycle: read from the source (every import
  at module level, resolved), and tried: each module imports first in a fresh interpreter;
- no function imports a module of stoker's (the way a cycle is usually dodged);
- every entrypoint (`if __name__ == "__main__"`) has a docstring with its `-m` command.
"""

from __future__ import annotations

import ast
import os
import subprocess
import tomllib
import unittest
from pathlib import Path
from typing import Iterator, Optional

from .helpers import PY_DIR, PYTHON, SRC_DIR, payload_env

PACKAGES = ("stoker_examples", "stoker_fire", "stoker_payload")
_FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def module_files() -> dict[str, Path]:
    """Every module of stoker's packages by dotted name (a package by its own name)."""
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((SRC_DIR / package).rglob("*.py")):
            parts = path.relative_to(SRC_DIR).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = module_files()


def _imports(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """(import node, whether it runs inside a function) for every import in `tree`."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.AST, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            yield from walk(child, in_function or isinstance(child, _FUNCTION_NODES))

    yield from walk(tree, False)


def _targets(module: str, node: ast.AST) -> set[str]:
    """The modules of stoker's that an import statement in `module` loads."""
    is_package = MODULES[module].name == "__init__.py"
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        names = [source] + [f"{source}.{alias.name}" for alias in node.names]
    targets = {name for name in names if name in MODULES}
    # Importing a module of another package runs that package's __init__ first.
    targets |= {t.split(".")[0] for t in targets}
    # The importing module's own packages are already being imported (`from . import x`
    # loads x, not the package again), so they are not edges.
    parts = module.split(".")
    return targets - {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[name] = set()
        for node, in_function in _imports(tree):
            if not in_function:
                graph[name] |= _targets(name, node)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> Optional[list[str]]:
    """One cycle of `graph` as a path (first node repeated at the end), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> Optional[list[str]]:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


class PayloadPathTest(unittest.TestCase):
    def test_the_payload_path_holds_only_the_stoker_packages(self):
        names = sorted(p.name for p in SRC_DIR.iterdir() if p.name != "__pycache__" and not p.name.endswith(".egg-info"))
        self.assertEqual(names, sorted(PACKAGES))
        for package in PACKAGES:
            self.assertTrue((SRC_DIR / package / "__init__.py").is_file(), package)


class PyprojectTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(PY_DIR / "pyproject.toml", "rb") as fh:
            cls.project = tomllib.load(fh)

    def test_it_declares_the_packages_under_src(self):
        setuptools = self.project["tool"]["setuptools"]
        self.assertEqual(setuptools["package-dir"], {"": "src"})
        self.assertEqual(sorted(setuptools["packages"]), sorted(PACKAGES))

    def test_it_declares_the_test_layout_discovery_uses(self):
        pytest = self.project["tool"]["pytest"]["ini_options"]
        self.assertEqual(pytest["testpaths"], ["tests"])
        self.assertEqual(pytest["pythonpath"], ["src"])
        self.assertEqual(Path(__file__).resolve().parent, PY_DIR / "tests")
        # unittest discovery skips a folder without __init__.py without a word.
        for folder in {p.parent for p in (PY_DIR / "tests").rglob("test_*.py")}:
            self.assertTrue((folder / "__init__.py").is_file(), f"{folder} has tests but no __init__.py")

    def test_the_build_needs_nothing_beyond_setuptools(self):
        self.assertEqual(self.project["build-system"]["build-backend"], "setuptools.build_meta")
        self.assertEqual([r.split(">")[0] for r in self.project["build-system"]["requires"]], ["setuptools"])


class ImportCycleTest(unittest.TestCase):
    def test_the_module_level_imports_form_no_cycle(self):
        graph = import_graph()
        self.assertIn("stoker_payload.report", graph["stoker_payload.entrypoint"])
        self.assertIn("stoker_payload.exit_codes", graph["stoker_payload.runtime"])
        self.assertIn("stoker_payload", graph["stoker_fire.train"], "a cross-package import runs the package's __init__")
        cycle = find_cycle(graph)
        self.assertIsNone(cycle, " -> ".join(cycle or []))

    def test_the_cycle_finder_finds_a_cycle(self):
        self.assertEqual(find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}), ["a", "b", "c", "a"])
        self.assertIsNone(find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}))

    def test_exit_codes_imports_nothing_of_stokers(self):
        self.assertEqual(import_graph()["stoker_payload.exit_codes"], set())

    def test_no_function_imports_a_module_of_stokers(self):
        found = []
        for name, path in MODULES.items():
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node, in_function in _imports(tree):
                if in_function and (_targets(name, node) or getattr(node, "level", 0)):
                    found.append(f"{path.relative_to(PY_DIR)}:{node.lineno}")
        self.assertEqual(found, [])

    def test_every_module_imports_first_in_a_fresh_interpreter(self):
        for name in MODULES:
            with self.subTest(module=name):
                done = subprocess.run(
                    [PYTHON, "-c", f"import {name}"],
                    cwd=PY_DIR.parent,  # not worker/python: only PYTHONPATH may find the packages
                    env=payload_env(),
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                self.assertEqual(done.returncode, 0, done.stderr)


def _is_main_guard(node: ast.stmt) -> bool:
    """Whether `node` is a module-level `if __name__ == "__main__":`."""
    test = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and [type(op) for op in test.ops] == [ast.Eq]
        and [getattr(c, "value", None) for c in test.comparators] == ["__main__"]
    )


class EntrypointDocstringTest(unittest.TestCase):
    def test_every_entrypoint_documents_its_command(self):
        entrypoints = []
        for name, path in MODULES.items():
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if not any(_is_main_guard(node) for node in tree.body):
                continue
            entrypoints.append(name)
            doc = ast.get_docstring(tree) or ""
            self.assertIn(f"-m {name}", doc, f"{name}: the docstring gives no `python -m {name}` command")
            for section in ("inputs", "exit codes"):
                self.assertIn(section, doc.lower(), f"{name}: the docstring has no {section}")
        self.assertEqual(
            sorted(entrypoints),
            [
                "stoker_examples.make_items",
                "stoker_examples.smoke_train",
                "stoker_examples.toy_generate",
                "stoker_fire.evaluate",
                "stoker_fire.external",
                "stoker_fire.selfplay",
                "stoker_fire.synth",
                "stoker_fire.train",
            ],
        )


if __name__ == "__main__":
    unittest.main()
