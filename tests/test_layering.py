"""Imports run downward only.

Every module of the installed megq package is parsed with ``ast`` (imports inside functions included, relative
imports resolved) and each import edge is checked against ``FORBIDDEN`` below. The layering follows MegEngine's:
the int8 kernels and their numpy twins at the bottom, then tensors, autodiff and the functional ops (including the
int8 ops on QuantizedTensor, ``megq.functional.quantized``), then modules (float, QAT, quantized) and the
quantization workflow, then models, data, the CLI, the demo and serialization on top.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

TOP = ("megq.models", "megq.data", "megq.cli", "megq.demo", "megq.serialization", "megq.__main__")
ABOVE_FUNCTIONAL = ("megq.module", "megq.quantization", "megq.optimizer") + TOP
ABOVE_KERNELS = ("megq.functional", "megq.tensor", "megq.autodiff", "megq.qtensor") + ABOVE_FUNCTIONAL

# A module whose name starts with the key (a dotted prefix) must not import a module whose name starts with any of
# the values. Every matching key applies (megq.module.qat obeys both its own row and megq.module's).
FORBIDDEN: Dict[str, Tuple[str, ...]] = {
    "megq.kernels": ABOVE_KERNELS,
    "megq.reference": ABOVE_KERNELS,
    "megq.qtensor": ABOVE_FUNCTIONAL,
    "megq.tensor": ABOVE_FUNCTIONAL,
    "megq.autodiff": ABOVE_FUNCTIONAL,
    "megq.functional": ABOVE_FUNCTIONAL,
    "megq.module": TOP,
    "megq.module.qat": ("megq.module.quantized",),
    "megq.quantization": TOP,
}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _search_locations() -> List[Path]:
    """Where the installed megq package lives (an editable install may spread it over several folders)."""
    spec = importlib.util.find_spec("megq")
    assert spec is not None and spec.submodule_search_locations, "megq is not installed"
    return [Path(p) for p in spec.submodule_search_locations]


def _modules() -> Dict[str, Path]:
    """Dotted module name -> source file, for every .py file of the installed package."""
    out = {}
    for root in _search_locations():
        for path in sorted(root.rglob("*.py")):
            parts = ["megq"] + list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out.setdefault(".".join(parts), path)
    return out


def _resolve(module: str, is_package: bool, level: int, target: Optional[str]) -> str:
    """Absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(module: str, path: Path, known: Dict[str, Path]) -> Iterator[Tuple[str, int]]:
    """(imported megq module, line) for every import statement anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, is_package, node.level, node.module) if node.level else (node.module or "")
            for alias in node.names:
                # ``from pkg import sub`` imports the submodule pkg.sub when there is one.
                sub = f"{source}.{alias.name}"
                yield (sub if sub in known else source), node.lineno


def violations(selected: Dict[str, Path], known: Dict[str, Path]) -> List[str]:
    """One line per import edge of the ``selected`` modules that a row of FORBIDDEN bans."""
    found = []
    for module, path in selected.items():
        rules = [banned for layer, banned in FORBIDDEN.items() if _within(module, layer)]
        for target, line in imports_of(module, path, known) if rules else ():
            hit = next((b for banned in rules for b in banned if _within(target, b)), None)
            if hit is not None:
                found.append(f"{path.name}:{line}: {module} imports {target} (layer {hit} is above it)")
    return found


def test_imports_run_downward():
    known = _modules()
    problems = violations(known, known)
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_every_layer_exists():
    """A renamed package must not silently empty a rule."""
    known = _modules()
    for layer in list(FORBIDDEN) + ["megq.module.quantized", "megq.functional.quantized"]:
        assert any(_within(m, layer) for m in known), layer


# Upward imports this test exists to catch, as they were once written in megq (and two more layers' worth).
@pytest.mark.parametrize("module, code, target", [
    ("megq.functional.pooling", "def f(x):\n    from ..module.quantized import functional as QF\n",
     "megq.module.quantized.functional"),
    ("megq.module.qat", "from ..quantized import qfloat_eval as _qfloat_eval\n", "megq.module.quantized.qfloat_eval"),
    ("megq.kernels.gemm", "import megq.functional\n", "megq.functional"),
    ("megq.qtensor", "from .quantization import integer_eval\n", "megq.quantization.integer_eval"),
    ("megq.module.quantized.conv", "from ...models import resnet\n", "megq.models.resnet"),
])
def test_detects_upward_imports(tmp_path, module, code, target):
    path = tmp_path / ("__init__.py" if module == "megq.module.qat" else "m.py")
    path.write_text(code)
    known = dict(_modules(), **{module: path, target: Path("stub.py")})
    assert [t for t, _ in imports_of(module, path, known)] == [target]
    problems = violations({module: path}, known)
    assert len(problems) == 1 and target in problems[0], problems


def test_allows_downward_imports(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("from ...functional import quantized\nfrom ... import kernels\nfrom ..qat import QATModule\n")
    known = _modules()
    assert violations({"megq.module.quantized.conv": path}, known) == []
