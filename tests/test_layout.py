"""The package layout ARCHITECTURE.md describes, checked on the source: the import graph has no cycle, imports
point down the stages of the data flow, an import inside a function is there only to keep a heavy library off a
module that loads without it (and says so), no file is too long, the light core loads without torch, and
importing the library changes no global state."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nasscale"
# The stages in the order data flows; a module imports only from its own stage or the ones before it.
STAGES = ("errors", "units", "spec", "presets", "space", "models", "evaluate", "weights", "search", "scale", "report",
          "cli")
# Libraries worth keeping off a module that loads without them (an import inside a function is for these only).
HEAVY = {"torch", "ray", "plotly", "fvcore", "optuna", "optuna_dashboard", "pandas", "numpy", "scipy", "sklearn",
         "onnx", "onnxruntime", "PIL"}
MAX_LINES = 600
LIGHT_CORE = ("nasscale", "nasscale.errors", "nasscale.units", "nasscale.spec.*", "nasscale.presets.*",
              "nasscale.space.*", "nasscale.scale.solver", "nasscale.scale.ladder", "nasscale.scale.allocation",
              "nasscale.scale.checks", "nasscale.report.data", "nasscale.search.config", "nasscale.search.record",
              "nasscale.search.pareto", "nasscale.search.results", "nasscale.search.storage",
              "nasscale.search.trials", "nasscale.evaluate.settings", "nasscale.evaluate.latency_table")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def stage_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


class Import:
    def __init__(self, source: str, target: str, node: ast.stmt, in_function: bool, loading: bool):
        self.source, self.target, self.node = source, target, node
        self.in_function = in_function  # inside a function: runs when the function does
        self.loading = loading  # runs when the module loads (not in a function, not under TYPE_CHECKING)

    def __repr__(self) -> str:
        return f"{MODULES[self.source].relative_to(PACKAGE.parent)}:{self.node.lineno} imports {self.target}"


def read_imports() -> tuple[list[Import], dict[str, set[str]]]:
    """Every nasscale import (top level, in functions, under TYPE_CHECKING) and each module's third-party
    imports at load time."""
    found, libraries = [], {}
    for module, path in MODULES.items():
        libraries[module] = set()

        def visit(node: ast.AST, in_function: bool, loading: bool, module: str = module) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                    names = [f"{child.module}.{alias.name}" for alias in child.names] or [child.module]
                    targets = {resolve(name) for name in names if name.startswith("nasscale")}
                    if not child.module.startswith("nasscale") and loading:
                        libraries[module].add(child.module.split(".")[0])
                elif isinstance(child, ast.Import):
                    targets = {resolve(alias.name) for alias in child.names if alias.name.startswith("nasscale")}
                    if loading:
                        libraries[module] |= {alias.name.split(".")[0] for alias in child.names
                                              if not alias.name.startswith("nasscale")}
                else:
                    type_checking = isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
                    function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                    visit(child, in_function or function, loading and not (function or type_checking))
                    continue
                found.extend(Import(module, target, child, in_function, loading) for target in targets
                             if target and target != module and target != "nasscale")

        visit(ast.parse(path.read_text(encoding="utf-8")), False, True)
    return found, libraries


IMPORTS, LIBRARIES = read_imports()


def load_time_libraries() -> dict[str, set[str]]:
    """The third-party libraries importing each module loads (its own load-time imports, those of the modules it
    imports at load time, and those of its packages' ``__init__``)."""
    edges = {module: set() for module in MODULES}
    for item in IMPORTS:
        if item.loading:
            edges[item.source].add(item.target)
    for module in MODULES:
        parent = module.rpartition(".")[0]
        while parent:
            if parent in MODULES and parent != module:
                edges[module].add(parent)
            parent = parent.rpartition(".")[0]
    loaded: dict[str, set[str]] = {}
    for module in MODULES:  # a walk per module: package edges make cycles, so no memo of partial results
        reached, frontier = {module}, [module]
        while frontier:
            for target in edges[frontier.pop()] - reached:
                reached.add(target)
                frontier.append(target)
        loaded[module] = set().union(*(LIBRARIES[member] for member in reached))
    return loaded


def test_the_import_graph_has_no_cycle():
    edges: dict[str, set[str]] = {module: set() for module in MODULES}
    for item in IMPORTS:
        edges[item.source].add(item.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def connect(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in edges[module]:
            if target not in index:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(" <-> ".join(sorted(component)))

    for module in MODULES:
        if module not in index:
            connect(module)
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_imports_point_down_the_stages():
    upward = [item for item in IMPORTS if item.source != "nasscale"
              and STAGES.index(stage_of(item.target)) > STAGES.index(stage_of(item.source))]
    assert not upward, f"imports of a later stage: {upward}"


def test_nothing_imports_the_curated_namespace():
    # nasscale/__init__.py re-exports for users; the package itself imports from the stage modules.
    users = [path for module, path in MODULES.items() if module != "nasscale"
             and any(isinstance(node, ast.ImportFrom) and node.module == "nasscale" and node.level == 0
                     for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))]
    assert not users


def test_an_import_inside_a_function_keeps_a_heavy_library_off_and_says_so():
    loaded = load_time_libraries()
    wrong = []
    for item in IMPORTS:
        if not item.in_function:
            continue
        spared = (loaded[item.target] | LIBRARIES[item.target]) - loaded[item.source]
        lines = MODULES[item.source].read_text(encoding="utf-8").splitlines()
        above = item.node.lineno - 2
        while lines[above].strip().startswith(("from ", "import ")):  # one comment serves a block of imports
            above -= 1
        comment = "#" in lines[item.node.lineno - 1] or lines[above].strip().startswith("#")
        if not spared & HEAVY:
            wrong.append(f"{item}: nothing heavy to keep off ({sorted(spared)}); import it at the top")
        elif not comment:
            wrong.append(f"{item}: keeps {sorted(spared & HEAVY)} off; say so in a comment")
    assert not wrong, "\n".join(wrong)


def test_no_file_is_too_long_and_the_cli_is_one_package():
    long = {str(path): count for path in MODULES.values()
            if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long
    assert not list(PACKAGE.glob("cli_*.py"))
    for package in STAGES[2:]:
        docstring = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text(encoding="utf-8")))
        assert docstring and "May import" in docstring or package == "cli", package


def light_modules() -> list[str]:
    return [module for module in MODULES if any(
        module == pattern or (pattern.endswith(".*") and module.startswith(pattern[:-1])) for pattern in LIGHT_CORE)]


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_light_core_loads_without_torch():
    modules = light_modules()
    assert len(modules) > 30
    loaded = run_python("import importlib, sys\n"
                        f"for name in {modules!r}: importlib.import_module(name)\n"
                        "print(sorted(m for m in ('torch', 'plotly', 'ray', 'fvcore') if m in sys.modules))")
    assert loaded.strip() == "[]"


def test_the_command_line_starts_without_heavy_libraries():
    loaded = run_python("import sys\nfrom nasscale.cli import app\n"
                        f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))")
    assert loaded.strip() == "[]"


def test_importing_the_library_changes_no_global_state():
    # Logging levels and warning filters are the command line's to set (nasscale.cli.app), not an import's. The
    # libraries below are imported first: what they set on import (torch adds warning filters) is theirs.
    modules = [module for module in MODULES if not module.startswith("nasscale.cli")]
    libraries = ("torch", "optuna", "ray", "plotly", "fvcore.nn", "pandas", "scipy.stats", "sklearn", "onnx")
    changed = run_python(
        "import importlib, logging, warnings\n"
        f"for name in {libraries!r}: importlib.import_module(name)\n"
        "def state(): return list(warnings.filters), {n: logging.getLogger(n).level for n in ('optuna', 'ray', '')}\n"
        "before = state()\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(before == state())")
    assert changed.strip() == "True"
