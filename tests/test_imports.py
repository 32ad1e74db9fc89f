"""The import graph: floors, no cycles, an engine that knows no model family, light configs.

The graph is read statically (``ast``) from every module of ``jaxfm`` and ``kernels``:
module-level imports only, since an import inside a function runs when it is called, not when
the module loads. Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first, so each
module also depends on its parent packages.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Floors, top to bottom: a module may import its own floor and those below it.
FLOORS = ("tasks", "train", "ckpt", "data", "models", "nn", "parallel")
#: Importable from any floor: configs, options and the standard-library-only helpers (atomic
#: writes, SIGTERM handling) import nothing heavy.
LIGHT = {
    "jaxfm",
    "jaxfm._lazy",
    "jaxfm.atomic",
    "jaxfm.config",
    "jaxfm.provenance",
    "jaxfm.signals",
}
#: What the engine may use outside itself: checkpoints, the mesh, the generic input pipeline,
#: and the two parameter/aux conventions every model follows.
ENGINE_MAY_USE = (
    "jaxfm.ckpt",
    "jaxfm.parallel",
    "jaxfm.data.pipeline",
    "jaxfm.nn.aux",
    "jaxfm.nn.params",
)


def _modules() -> dict[str, str]:
    out = {}
    for pkg in ("jaxfm", "kernels"):
        for d, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(d, f)
                    name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _explicit_imports(name: str, path: str) -> set[str]:
    """Project modules ``name`` names in its module-level imports. ``from P import x`` reads
    package ``P``'s namespace (a partly initialised one, if P is still importing), so it is an
    edge to ``P`` as well as to ``P.x`` when that is a module."""
    found: set[str] = set()
    is_pkg = path.endswith("__init__.py")

    def visit(body):
        for node in body:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".")[: None if is_pkg else -1]
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If | ast.Try | ast.With):
                visit(node.body)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(getattr(node, "orelse", []))
                visit(getattr(node, "finalbody", []))

    visit(ast.parse(open(path).read(), path).body)
    return {d for d in found if d in MODULES and d != name}


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


EXPLICIT = {name: _explicit_imports(name, path) for name, path in MODULES.items()}
#: Edges that can close a cycle: explicit imports, and the packages a dependency's import runs
#: first, except the importer's own packages (already importing when the importer runs).
GRAPH = {
    name: deps | {a for d in deps for a in _ancestors(d)} - _ancestors(name) - {name}
    for name, deps in EXPLICIT.items()
}
#: What importing a module loads, directly: its edges and its own packages.
LOADS = {name: (GRAPH[name] | _ancestors(name)) for name in GRAPH}


def _closure(names) -> set[str]:
    seen, todo = set(), list(names)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(LOADS[n])
    return seen


def _floor(name: str) -> int | None:
    parts = name.split(".")
    if parts[0] != "jaxfm" or name in LIGHT or len(parts) < 2 or parts[-1] == "options":
        return None
    return len(FLOORS) - FLOORS.index(parts[1]) if parts[1] in FLOORS else None


def test_graph_was_read():
    assert {"jaxfm.train.loop", "jaxfm.tasks.surrogate.task", "kernels.flash_attention.ops"} <= set(
        GRAPH
    )
    assert "jaxfm.train.step" in GRAPH["jaxfm.train.loop"]
    assert "jaxfm.ckpt.manager" in _closure(["jaxfm.train"]) | _closure(["jaxfm.train.loop"])


def test_no_import_cycles():
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                dfs(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            dfs(node)


def test_floors_import_only_downwards():
    bad = [
        f"{name} ({FLOORS[len(FLOORS) - _floor(name)]}) imports {dep}"
        for name, deps in GRAPH.items()
        if _floor(name) is not None
        for dep in deps
        if _floor(dep) is not None and _floor(dep) > _floor(name)
    ]
    assert not bad, "\n".join(sorted(bad))


def test_light_modules_import_only_light_modules():
    light = [n for n in GRAPH if n in LIGHT or n.endswith(".options")]
    bad = [
        f"{n} imports {d}"
        for n in light
        for d in GRAPH[n]
        if not (
            d in LIGHT
            or d.endswith(".options")
            or d in {"jaxfm.train", "jaxfm.ckpt", "jaxfm.parallel"}
        )
    ]
    assert not bad, "\n".join(bad)


def test_engine_loads_no_model_family():
    engine = [n for n in GRAPH if n == "jaxfm.train" or n.startswith("jaxfm.train.")]
    allowed = ("jaxfm.train", *ENGINE_MAY_USE)
    bad = sorted(
        n
        for n in _closure(engine)
        if n.startswith("jaxfm.")
        and not n.startswith(allowed)
        and n not in LIGHT
        and not n.endswith(".options")
        and not any(a.startswith(n + ".") for a in ENGINE_MAY_USE)  # their packages
    )
    assert not bad, f"the engine (jaxfm.train) loads domain modules: {bad}"


def test_kernels_depend_on_jax_alone():
    bad = [
        f"{n} imports {d}"
        for n in GRAPH
        if n.startswith("kernels")
        for d in GRAPH[n]
        if d.startswith("jaxfm")
    ]
    assert not bad, "\n".join(bad)


def _fresh(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_config_import_loads_no_orbax_grain_or_engine():
    loaded = _fresh(
        "import sys, jaxfm.config\n"
        "print(' '.join(m for m in sys.modules if m.split('.')[0] in ('orbax', 'grain') "
        "or m.startswith(('jaxfm.train.loop', 'jaxfm.ckpt.manager', 'jaxfm.data'))))"
    )
    assert loaded == "", f"import jaxfm.config loaded: {loaded[:300]}"


def test_importing_jaxfm_changes_no_global_state():
    out = _fresh(
        "import os\nfrom flax import nnx\nbefore = nnx.using_eager_sharding()\n"
        "import jaxfm, jaxfm.models.surrogate, jaxfm.tasks.surrogate.task, jaxfm.train.loop\n"
        "print(os.environ.get('XLA_FLAGS', ''), nnx.using_eager_sharding() == before)"
    )
    assert out == "True", out


def test_models_build_without_a_mesh_under_global_eager_sharding():
    out = _fresh(
        "from flax import nnx\nnnx.use_eager_sharding(True)\n"
        "from jaxfm.tasks.surrogate.task import SurrogateTask, SurrogateTaskConfig\n"
        "from jaxfm.models.contrastive import ContrastiveConfig, ContrastiveModel\n"
        "from jaxfm.models.xval import XValConfig, XValLM\n"
        "r = nnx.Rngs(0)\nSurrogateTask(SurrogateTaskConfig()).build_model(r)\n"
        "ContrastiveModel(ContrastiveConfig(), rngs=r)\nXValLM(XValConfig(), rngs=r)\nprint('ok')"
    )
    assert out == "ok"


def test_configure_cpu_sets_flags_once_and_keeps_explicit_ones():
    out = _fresh(
        "import os\nos.environ['XLA_FLAGS'] = "
        "'--xla_cpu_enable_concurrency_optimized_scheduler=true'\n"
        "import jaxfm\njaxfm.configure_cpu(devices=3)\njaxfm.configure_cpu(devices=3)\n"
        "print(os.environ['XLA_FLAGS'])\nimport jax\nprint(jax.device_count())"
    )
    flags, count = out.splitlines()
    assert flags.split() == [
        "--xla_cpu_enable_concurrency_optimized_scheduler=true",
        "--xla_force_host_platform_device_count=3",
    ]
    assert count == "3"
