"""The layout of the Python side (worker/python/pyproject.toml) holds:

- the payload's PYTHONPATH (worker/python/src) holds the three stoker_* packages and nothing
  else, so no name a user's script imports (`fire`, `tests`, ...) can come from stoker;
- pyproject.toml declares exactly those packages and the test layout that discovery uses;
- the imports between stoker's modules form no cycle: read from the source (every import
  at module level, resolved), and tried: each module imports first in a fresh interpreter;
- no function imports a module of stoker's (the way a cycle is usually dodged);
- every entrypoint (`if __name__ == "__main__"`) has a docstring with its `-m` command;
- units a newcomer can read (README, Development: "Sizes"): every module under src/ is at most MAX_MODULE_LINES
  (400) lines and every function (decorators, docstring and blank lines counted; a nested
  function counts inside its parent and on its own) at most MAX_FUNCTION_LINES (80), unless it
  says why with the marker `Long because:` followed by the reason: in the module's docstring
  for a module, in a comment on the lines right above the function (or its decorators) for a
  function. The checker is tried on made-up sources too, so it is seen to fail;
- the code that moved between modules still resolves: every name a function (or class body)
  reads from its module's globals is bound there or a builtin (symtable, no import, so the
  GPU path of the hf backend is checked on a machine without transformers), and every
  `module.name` or `from module import name` of stoker's in the tests and in bench/*.py
  (bench/gpu_check.py drives the hf backend on a GPU) exists.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import os
import re
import subprocess
import symtable
import tomllib
import unittest
from pathlib import Path
from typing import Iterator, Optional

from .helpers import PY_DIR, PYTHON, REPO_ROOT, SRC_DIR, payload_env

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
                "stoker_fire.chat_template",
                "stoker_fire.evaluate",
                "stoker_fire.external",
                "stoker_fire.init_model",
                "stoker_fire.selfplay",
                "stoker_fire.synth",
                "stoker_fire.train",
                "stoker_payload.deepspeed_launch",
            ],
        )


# -- units a newcomer can read --------------------------------------------------------------

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
LONG_BECAUSE = re.compile(r"Long because:\s*\S")


def too_long(source: str, where: str) -> list[str]:
    """What in `source` is longer than the limits without saying why (see the module docstring)."""
    lines = source.splitlines()
    tree = ast.parse(source, where)
    found = []
    if len(lines) > MAX_MODULE_LINES and not LONG_BECAUSE.search(ast.get_docstring(tree) or ""):
        found.append(f"{where}: {len(lines)} lines (more than {MAX_MODULE_LINES}, and the docstring has no `Long because:`)")
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        length = node.end_lineno - first + 1
        if length > MAX_FUNCTION_LINES and not _says_why_above(lines, first):
            found.append(f"{where}:{node.lineno}: {node.name} is {length} lines (more than {MAX_FUNCTION_LINES}, and no `# Long because:` right above it)")
    return found


def _says_why_above(lines: list[str], first: int) -> bool:
    """Whether the comment lines right above line `first` (1-based) hold the marker."""
    at = first - 2
    comment = []
    while at >= 0 and lines[at].strip().startswith("#"):
        comment.append(lines[at])
        at -= 1
    return bool(LONG_BECAUSE.search(" ".join(comment)))


def unresolved_globals(source: str, where: str) -> list[str]:
    """Names that a function or class body of `source` reads from the module's globals but that
    the module never binds and that are no builtins: each would be a NameError when run."""
    top = symtable.symtable(source, where, "exec")
    known = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    known |= set(dir(builtins)) | {"__file__", "__name__", "__doc__", "__spec__", "__package__", "__loader__", "__path__"}
    found = []

    def walk(table: symtable.SymbolTable) -> None:
        for child in table.get_children():
            for sym in child.get_symbols():
                if sym.is_global() and sym.is_referenced() and sym.get_name() not in known:
                    found.append(f"{where}:{child.get_lineno()}: {child.get_name()} reads {sym.get_name()!r}, which the module does not define")
            walk(child)

    walk(top)
    return found


class UnitSizeTest(unittest.TestCase):
    def test_every_module_and_function_is_short_or_says_why(self):
        found = []
        for path in MODULES.values():
            found += too_long(path.read_text(encoding="utf-8"), str(path.relative_to(PY_DIR)))
        self.assertEqual(found, [], "\n".join(found))

    def test_the_checker_finds_a_long_module_and_a_long_function(self):
        body = "".join(f"    x{i} = {i}\n" for i in range(80))
        long_module = '"""A module."""\n' + "x = 1\n" * MAX_MODULE_LINES
        cases = [
            ("a long module", long_module, 1),
            ("a long module that says why", '"""A module.\n\nLong because: a table.\n"""\n' + "x = 1\n" * MAX_MODULE_LINES, 0),
            ("a marker without a reason", '"""Long because:\n"""\n' + "x = 1\n" * MAX_MODULE_LINES, 1),
            ("an 81-line function", f"def f():\n{body}", 1),
            ("an 80-line function", f"def f():\n{body[: body.rindex('    x79')]}", 0),
            ("an 81-line function that says why", f"# Long because: one table.\ndef f():\n{body}", 0),
            ("a decorated one that says why", f"# Long because: one table.\n@staticmethod\ndef f():\n{body}", 0),
            ("a marker with a line between", f"# Long because: one table.\n\ndef f():\n{body}", 1),
            ("a marker inside the function", f"def f():\n    # Long because: one table.\n{body}", 1),
            ("a long method", f"class C:\n    def f(self):\n{'    ' + body.replace(chr(10), chr(10) + '    ')}", 1),
        ]
        for name, source, expected in cases:
            with self.subTest(name):
                self.assertEqual(len(too_long(source, "m.py")), expected, too_long(source, "m.py"))


class MovedCodeTest(unittest.TestCase):
    def test_every_global_name_a_function_reads_is_defined(self):
        found = []
        for path in MODULES.values():
            found += unresolved_globals(path.read_text(encoding="utf-8"), str(path.relative_to(PY_DIR)))
        self.assertEqual(found, [], "\n".join(found))

    def test_the_name_check_finds_a_missing_import(self):
        source = "import json\n\ndef f(path):\n    return os.path.exists(path) and json.loads(path)\n\nclass C:\n    size = LIMIT\n"
        self.assertEqual(len(unresolved_globals(source, "m.py")), 2)
        self.assertEqual(unresolved_globals("import os\nLIMIT = 1\n" + source, "m.py"), [])

    def test_what_tests_and_bench_use_of_stokers_modules_exists(self):
        users = sorted((PY_DIR / "tests").rglob("*.py")) + sorted((REPO_ROOT / "bench").glob("*.py"))
        self.assertIn(REPO_ROOT / "bench" / "gpu_check.py", users)
        missing, checked = [], 0
        for path in users:
            for module, name, line in _stoker_names_used(ast.parse(path.read_text(encoding="utf-8"))):
                checked += 1
                if not _exists(module, name):
                    missing.append(f"{path.relative_to(REPO_ROOT)}:{line}: {module}.{name}")
        self.assertGreater(checked, 100)
        self.assertEqual(missing, [], "\n".join(missing))


def _stoker_names_used(tree: ast.AST) -> Iterator[tuple[str, str, int]]:
    """(module, name, line) for `from stoker_x.m import name` and for `alias.name` where alias is
    a module of stoker's imported as `from stoker_x import m [as alias]` (the file's names,
    wherever imported)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] in PACKAGES:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in MODULES:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                else:
                    yield node.module or "", alias.name, node.lineno
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            yield aliases[node.value.id], node.attr, node.lineno


def _exists(module: str, name: str) -> bool:
    if f"{module}.{name}" in MODULES:
        return True
    return hasattr(importlib.import_module(module), name)


if __name__ == "__main__":
    unittest.main()
