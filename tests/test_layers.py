"""The package's layers read forward: each module imports only from its own layer or the layers before it.

    config, errors, runtime, io, plots -> data -> models -> decoding -> metrics -> training -> inference
    -> evaluation -> experiments -> bench -> cli

Every import counts, also those inside functions. `nmt/__init__.py` (lazy public names) is exempt.
The lab around the product (scripts/: the peer benchmark, the revision comparison) imports nmt, never the reverse.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nmt"
SCRIPTS = PACKAGE.parent / "scripts"
LAYERS = [
    {"config", "errors", "runtime", "io", "plots"},
    {"data"},
    {"models"},
    {"decoding"},
    {"metrics"},
    {"training"},
    {"inference"},
    {"evaluation"},
    {"experiments"},
    {"bench"},
    {"cli"},
]


def layer_of(module: str) -> int:
    """Layer index of a dotted nmt module name (nmt.training.trainer -> training)."""
    top = module.split(".")[1]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, nmt module) of every import of an nmt module in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "nmt" else [f"nmt.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names if n.startswith("nmt.")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("nmt.")]
    return found


def test_every_layer_is_known():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").exists())}
    assert tops == set().union(*LAYERS)


def test_imports_read_forward():
    backwards = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":
            continue
        module = "nmt." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for line, target in imports_of(path):
            if layer_of(target) > layer_of(module):
                backwards.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not backwards, "imports that point backwards:\n" + "\n".join(backwards)


def test_nothing_imports_the_cli():
    users = [f"{p.relative_to(PACKAGE.parent)}:{line}" for p in PACKAGE.rglob("*.py") if "cli" not in p.parts
             for line, target in imports_of(p) if target.startswith("nmt.cli")]
    assert not users


def top_level_imports(path: Path) -> set[str]:
    """The first dotted part of every absolute import in the file (`from peer.joey import x` -> peer)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
    return names


def test_nmt_never_imports_the_lab_scripts():
    lab = {p.stem for p in SCRIPTS.glob("*.py")} | {p.parent.name for p in SCRIPTS.glob("*/__init__.py")}
    assert {"peer", "bench_against", "revision_probe"} <= lab
    users = [f"{p.relative_to(PACKAGE.parent)} imports {name}" for p in PACKAGE.rglob("*.py")
             for name in top_level_imports(p) & lab]
    assert not users, "the package imports the lab:\n" + "\n".join(users)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """nmt module -> the nmt modules it imports (also inside functions), for every module but nmt/__init__.py."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py"}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for _, target in imports_of(path):
            # `from nmt.x import y` names module nmt.x.y when that is a module, else a name in nmt.x.
            targets.add(target if target in modules else target.rsplit(".", 1)[0])
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def test_no_import_cycles():
    graph, cycles, state = import_graph(), [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else
                              f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
