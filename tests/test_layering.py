"""The layers contract (pyproject.toml, run by import-linter) and no import cycles."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
grimp = pytest.importorskip("grimp")


def test_layers_contract_is_kept():
    out = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command;"
                          " sys.exit(lint_imports_command())", "--no-cache"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.find_modules_directly_imported_by(w)))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_cycle_in_the_package():
    graph = grimp.build_graph("fodlam")
    assert "fodlam.importers.torch" in graph.modules       # the linter sees the front ends
    assert "fodlam.calibration.fit" in graph.modules
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    class G:
        modules = {"a", "b", "c", "d"}

        @staticmethod
        def find_modules_directly_imported_by(m):
            return {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}[m]
    assert _cycles(G()) == [["a", "b", "c"]]


def test_importers_import_nothing_of_costing():
    graph = grimp.build_graph("fodlam")
    for importer in ("fodlam.importers", "fodlam.config2017"):
        for costing in ("fodlam.api", "fodlam.costed", "fodlam.models", "fodlam.engines"):
            chain = graph.find_shortest_chain(importer=importer, imported=costing, as_packages=True) \
                if hasattr(graph, "find_shortest_chain") else None
            assert chain is None, f"{importer} reaches {costing}: {chain}"
