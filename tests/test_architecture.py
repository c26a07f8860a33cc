"""The package's import graph (every `import` of drkd_viz, at module level or inside a function): no circle between
modules, and the packages' layers only point down."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "drkd_viz"

# bottom to top: a module may import from its own layer's packages only when it is in the same package, and from
# any layer below
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "resources", "shipped"}),  # leaves
    frozenset({"utils"}),
    frozenset({"data"}),  # datasets and their folder layout
    frozenset({"runs"}),  # run and report folders (a runs folder holds a dataset)
    frozenset({"evaluation", "models", "serving"}),  # COCO evaluation; detectors; the dashboard's server
    frozenset({"tide"}),  # TIDE's error analysis, on COCOeval's matches
    frozenset({"distill"}),  # the losses and the distiller
    frozenset({"engine"}),  # training, checkpoints, inference
    frozenset({"analysis"}),  # the numbers behind every figure
    frozenset({"experiments", "viz"}),  # pipeline and reports; figures and charts
    frozenset({"widgets", "cli"}),  # the faces
)


def module_imports() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("drkd_viz"):
                targets |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer(pkg: str) -> int:
    found = [i for i, names in enumerate(LAYERS) if pkg in names]
    assert found, f"drkd_viz/{pkg} is in no layer: add it to LAYERS in {Path(__file__).name}"
    return found[0]


def test_no_import_circle():
    graph = module_imports()
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"an import circle: {' -> '.join(exc.args[1])}") from None


def test_layers_only_point_down():
    upward = []
    for module, targets in module_imports().items():
        for target in targets:
            source, dest = package(module), package(target)
            if source and dest and source != dest and layer(dest) >= layer(source):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that point up (or sideways) the layers:\n" + "\n".join(sorted(upward))


def test_the_layers_name_every_package():
    packages = {package(m) for m in module_imports()} - {""}
    assert packages == set().union(*LAYERS)
