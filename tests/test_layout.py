"""The shape of the code (docs/architecture.md): short files and functions, data flowing one way, no import circle.

Every module of `src/rlino` has a layer; a module imports only modules of lower layers (or of its own package).
Imports inside functions count too: a lazy import is still a dependency. A new module must be given a layer here,
which is the moment to decide where it belongs.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "rlino"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60

# upstream (low) to downstream (high): config -> task/model -> rollout -> objective -> step/trainer -> run folder ->
# report; the run folder's format module sits low because the trainer writes through it and the report reads it
LAYERS = {
    "rlino.errors": 0, "rlino.stats": 0,
    "rlino.typed": 1, "rlino.files": 1, "rlino.schedule": 1, "rlino.trackers": 1,
    "rlino.config": 2, "rlino.run_folder": 2, "rlino.plan_memory": 2, "rlino.checks": 3, "rlino.progress": 3,
    "rlino.tasks": 3, "rlino.distributed": 3,
    "rlino.embedded": 4, "rlino.gguf": 3,
    "rlino.models": 5, "rlino.lora": 5, "rlino.engine": 5, "rlino.prompts": 5, "rlino.sharding": 5,
    "rlino.rollout": 6, "rlino.objectives": 6, "rlino.gae": 6, "rlino.critic": 6,
    "rlino.evaluate": 7, "rlino.arms": 7, "rlino.credit": 7, "rlino.mini_batches": 7,
    "rlino.step": 8,
    "rlino.trainer": 9, "rlino.equivalence": 9, "rlino.report": 9,
    "rlino.compare": 10,
    "rlino.plan": 11,  # reads a run or compare config as compare does
    "rlino.cli": 12,
    "rlino.__main__": 13, "rlino": 13,
}

# what some modules may import at most, whatever their layer
ONLY = {
    "rlino.objectives": {"rlino.errors"},  # pure tensor math: nothing of config, models or files
    "rlino.gae": set(),
}
NEVER = {
    # the report reads run folders; it never reaches into what wrote them
    "rlino.report": {"rlino.trainer", "rlino.step", "rlino.rollout", "rlino.models", "rlino.evaluate",
                     "rlino.compare", "rlino.equivalence", "rlino.lora", "rlino.embedded", "rlino.distributed"},
    "rlino.compare": {"rlino.step", "rlino.rollout"},
}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def package(name: str) -> str:
    """The layer key of a module: its entry in LAYERS (a package covers its submodules)."""
    while name not in LAYERS and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports(path: Path, name: str) -> set[str]:
    """rlino modules imported anywhere in the file (module level and inside functions), relative ones resolved."""
    found = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "rlino"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_pkg else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] == "rlino":
                known = modules()
                for alias in node.names:  # `from rlino.report import plots` imports the submodule
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in known else base)
    return found - {name}


GRAPH = {name: imports(path, name) for name, path in modules().items()}


def test_every_module_has_a_layer():
    assert [m for m in GRAPH if package(m) not in LAYERS] == []


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_flow_one_way(name):
    mine = package(name)
    for dep in sorted(GRAPH[name]):
        theirs = package(dep)
        if theirs == mine:
            continue  # within one package (rlino.report.*, rlino.tasks.*)
        assert LAYERS[theirs] < LAYERS[mine], f"{name} (layer {LAYERS[mine]}) imports {dep} (layer {LAYERS[theirs]})"
        assert mine not in ONLY or theirs in ONLY[mine], f"{name} may import only {ONLY[mine]}, imports {dep}"
        assert theirs not in NEVER.get(mine, ()), f"{name} must not import {dep}"


def test_no_import_circle():
    seen: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for dep in sorted(GRAPH.get(node, ())):
            if seen.get(dep) == 1:
                pytest.fail("import circle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in seen:
                visit(dep, path + [dep])
        seen[node] = 2

    for name in sorted(GRAPH):
        if name not in seen:
            visit(name, [name])


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_files_and_functions_are_short(name):
    path = modules()[name]
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_FILE_LINES, f"{path}: {len(text.splitlines())} lines"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
            for node in ast.walk(ast.parse(text)) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == [], f"{path}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_checks_see_a_violation():
    """The graph reader resolves the import forms the code uses (so a bad import could not hide)."""
    assert "rlino.objectives" in GRAPH["rlino.step"]
    assert "rlino.run_folder" in GRAPH["rlino.report.read"]
    assert "rlino.trainer" in GRAPH["rlino.compare"]  # a lazy import inside a function
    assert any(dep.startswith("rlino.report.") for dep in GRAPH["rlino.report"])


def test_every_mutation_of_the_mutation_check_still_matches_the_code():
    """tools/mutation_check.py applies each mutation by exact text, found exactly once; a refactor that moves the
    line makes that mutation test nothing until someone runs the (slow, not in CI) check. Caught here instead."""
    import importlib.util
    import sys

    path = SRC.parents[1] / "tools" / "mutation_check.py"
    spec = importlib.util.spec_from_file_location("mutation_check", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    root = SRC.parents[1]
    stale = [(m.name, m.file, (root / m.file).read_text().count(m.old)) for m in module.MUTATIONS
             if (root / m.file).read_text().count(m.old) != 1]
    assert stale == [], "mutations whose text is not found exactly once (name, file, count): rewrite them"
    for m in module.MUTATIONS:
        for test in m.tests:
            assert (root / test.split("::")[0]).is_file(), (m.name, test)
