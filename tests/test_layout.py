"""The layout's rule: imports run one way along the pipeline, and no cycles."""

import ast
from pathlib import Path

import pytest

import lumbar_jax

PACKAGE = Path(lumbar_jax.__file__).parent
# Lower layers never import higher ones. Within a layer, the listed packages do not import
# each other either (training and export are independent), except in the first and last.
LAYERS = [
    {"labels", "files", "config", "checkpoint"},
    {"data", "model"},
    {"inference"},
    {"evaluation"},
    {"training", "export"},
    {"cli", "train", "__main__"},
]


def _unit(module: str) -> str:
    """The layer unit of a dotted module name inside lumbar_jax ('data', 'training', ...)."""
    return module.split(".")[1]


def _imports() -> dict[str, set[str]]:
    """{module: lumbar_jax modules it imports} for every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("lumbar_jax."):
                    targets |= {f"{node.module}.{a.name}" for a in node.names}
                    targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("lumbar_jax.")}
        found[name] = {t for t in targets if t.count(".") >= 1}
    return found


def _layer(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def test_imports_run_one_way():
    wrong = []
    for module, targets in _imports().items():
        if module == "lumbar_jax":
            continue
        here = _unit(module)
        for target in targets:
            there = _unit(target)
            if there == here:
                continue
            same_layer = _layer(there) == _layer(here)
            # The shared modules use each other, and the entry points call the commands.
            if _layer(there) > _layer(here) or (
                same_layer and _layer(here) not in (0, len(LAYERS) - 1)
            ):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


@pytest.mark.slow
def test_inference_needs_neither_training_nor_grain_nor_matplotlib_at_import():
    import subprocess
    import sys

    code = (
        "import sys; import lumbar_jax.inference.backends, lumbar_jax.inference.jax_stage, "
        "lumbar_jax.inference.writer; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('grain', 'matplotlib', 'optax') or m.startswith('lumbar_jax.training')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
