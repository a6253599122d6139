"""The layering of docs/design.md, read from its table, held against every import in astrops/.

In the way of import-linter's layers contract and sbi's circular-import test: an import from a
lower layer to a higher one, between the independent modules of one layer, or an import circle
fails, and so does a module no layer names. Imports inside functions and under TYPE_CHECKING count
like any other: hiding an import in a function does not remove the dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "astrops"


def layer_table() -> list[list[str]]:
    """The rows of design.md's layer table, top first: each a list of module prefixes."""
    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", line)
        if m:
            rows.append((int(m.group(1)), re.findall(r"`(astrops[\w.]*)`", m.group(2))))
    assert [n for n, _ in rows] == list(range(1, len(rows) + 1)), "layers numbered 1, 2, ..."
    return [mods for _, mods in rows]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """Every ``astrops`` module this file imports (``from astrops import x`` resolves to the
    submodule ``astrops.x`` when there is one), with the line."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("astrops")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if not base.startswith("astrops"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").exists() or (
                    ROOT / Path(*sub.split("."))
                ).is_dir()
                out.append((sub if is_module else base, node.lineno))
    return out


def layer_of(module: str, table: list[list[str]]) -> tuple[int, str] | None:
    """(row, prefix) of the most specific prefix naming ``module``."""
    best = None
    for i, prefixes in enumerate(table):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (
                best is None or len(p) > len(best[1])
            ):
                best = (i, p)
    return best


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer():
    table = layer_table()
    assert len(table) >= 10
    missing = [m for m in MODULES if m != "astrops" and layer_of(m, table) is None]
    assert not missing, f"add these to the layer table of docs/design.md: {missing}"


def violations() -> list[str]:
    table = layer_table()
    bad = []
    for mod, path in MODULES.items():
        if mod == "astrops":  # the facade: load_model lazily, __version__
            continue
        here = layer_of(mod, table)
        for target, line in imports(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {target}"
            if target == "astrops":  # the package root: test_root_imports_take_only_the_version
                continue
            there = layer_of(target, table)
            if there is None or there[1] == here[1]:
                continue
            if there[0] < here[0]:
                bad.append(f"{where}: layer {there[0] + 1} is above layer {here[0] + 1}")
            elif there[0] == here[0]:
                bad.append(f"{where}: {here[1]} and {there[1]} share a layer and are independent")
    return bad


def test_no_import_runs_upward_or_across_a_layer():
    bad = violations()
    assert not bad, "\n".join(bad)


def test_root_imports_take_only_the_version():
    for mod, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "astrops" and mod != "astrops":
                for alias in node.names:
                    assert alias.name == "__version__" or f"astrops.{alias.name}" in MODULES, (
                        f"{mod} takes {alias.name} from the package root"
                    )


def test_no_import_circle():
    graph = {
        mod: {t for t, _ in imports(path) if t in MODULES and t != mod}
        for mod, path in MODULES.items()
    }
    # a package's __init__ re-exporting its own submodules is not a circle back into it
    for mod in graph:
        graph[mod] = {t for t in graph[mod] if not mod.startswith(t + ".") or t == "astrops"}
    graph["astrops"] = set()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                pytest.fail("import circle: " + " -> ".join([*stack[stack.index(t) :], t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a store module importing training is reported."""
    fake = PACKAGE / "store" / "_upward_probe.py"
    monkeypatch.setitem(MODULES, "astrops.store._upward_probe", fake)
    monkeypatch.setattr(Path, "read_text", _probe_text(fake, "from astrops.training import x\n"))
    assert any("_upward_probe" in v and "above" in v for v in violations())


def _probe_text(fake: Path, source: str):
    original = Path.read_text

    def read_text(self, *a, **kw):
        return source if self == fake else original(self, *a, **kw)

    return read_text


def test_modules_stay_small():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 300}
    assert not long, f"split by role (docs/design.md): {long}"


def test_python_m_astrops_names_every_command_and_refuses_an_unknown_one(capsys):
    from astrops.entry.cli import COMMANDS, main

    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"python -m astrops {name}" in listed for name in COMMANDS)
    assert main(["scroe", "model.ckpt"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "unknown command 'scroe'" in line and "score" in line
    # every command's function exists, and its --help works without loading the work modules
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0 and "usage: python -m astrops" in capsys.readouterr().out
