"""The layering rule: each layer imports only from the layers before it.

The folders follow the pipeline: base -> expressions and loop IR ->
schedule records -> lowering -> passes -> codegen -> runtime -> the driver
and the public surface -> autotune -> `tex.autotvm` (which re-exports
`autotune.autotvm`, and which `import tex` does not load). This table is the
one place the rule is written; every `import` in `tex/` and `autotune/`, at
the top of a module or inside a function, is checked against it.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (layer, the modules or packages in it), in pipeline order.
LAYERS = (
    ("base", ("tex.errors", "tex.dtype", "tex.config", "tex.version", "tex.disk_cache",
              "tex.target", "tex.container", "tex.pass_context")),
    ("expressions and loop IR", ("tex.expr", "tex.ops", "tex.tensor", "tex.tensor_compute",
                                 "tex.scan_op", "tex.extern_op", "tex.ir", "tex.visitor",
                                 "tex.arith", "tex.printer", "tex.expr_json",
                                 "tex.stmt_functor", "tex.buffer_decl", "tex.ir_builder",
                                 "tex.tir", "tex.intrin_rules")),
    ("schedule", ("tex.schedule",)),
    ("lowering", ("tex.lower",)),
    ("passes", ("tex.passes",)),
    ("codegen", ("tex.codegen", "tex.intrin")),
    ("runtime", ("tex.runtime",)),
    ("driver", ("tex.driver", "tex", "tex.torch")),
    ("autotune", ("autotune",)),
    ("the AutoTVM surface", ("tex.autotvm",)),
)


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the most specific entry holding `module` (None: not ours)."""
    best, length = None, -1
    for k, (_, members) in enumerate(LAYERS):
        for m in members:
            if (module == m or module.startswith(m + ".")) and len(m) > length:
                best, length = k, len(m)
    return best


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree) -> list[tuple[str, int]]:
    """(module, line) of every absolute import; `from tex import x` counts as tex.x."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in ("tex", "autotune"):
                found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
            else:
                found.append((node.module, node.lineno))
    return found


def test_every_module_belongs_to_a_layer():
    paths = sorted((ROOT / "tex").rglob("*.py")) + sorted((ROOT / "autotune").rglob("*.py"))
    assert len(paths) > 50
    assert all(layer_of(module_name(p)) is not None for p in paths)


def test_no_module_imports_from_a_later_layer():
    paths = sorted((ROOT / "tex").rglob("*.py")) + sorted((ROOT / "autotune").rglob("*.py"))
    wrong = []
    for path in paths:
        name = module_name(path)
        mine = layer_of(name)
        for target, line in imported(ast.parse(path.read_text())):
            theirs = layer_of(target)
            if theirs is not None and theirs > mine:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {name} ({LAYERS[mine][0]}) "
                             f"imports {target} ({LAYERS[theirs][0]})")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_check_sees_a_wrong_import():
    tree = ast.parse("from tex.runtime.kernel import Kernel\nimport autotune.search\n")
    assert [layer_of(m) for m, _ in imported(tree)] == [6, 8]
    assert layer_of("tex.lower.nest") > layer_of("tex.schedule.stage") > layer_of("tex.ir")
