"""The repository's layout: the importers, sweeps and CLI as packages of their parts (one
job a file, none over 600 lines), generation tracing in the importers, and no debris."""

from pathlib import Path

import pytest

from conftest import ROOT


def test_onnx_importer_is_a_package_of_small_parts():
    pkg = ROOT / "importers" / "onnx"
    parts = {p.stem for p in pkg.glob("*.py")}
    assert {"__init__", "wire", "shapes", "lowerings", "walk", "annotate"} <= parts
    for p in pkg.glob("*.py"):
        assert len(p.read_text().splitlines()) <= 550, p.name
    assert not (ROOT / "importers" / "onnx.py").exists()


def test_no_room_over_600_lines():
    files = list((ROOT / "fodlam").rglob("*.py")) + list((ROOT / "importers").rglob("*.py"))
    files = [p for p in files if "calibration" not in p.relative_to(ROOT).parts[:2]
             and "importers" not in p.relative_to(ROOT).parts[1:2]]   # the links, counted once
    files += list((ROOT / "calibration").glob("*.py"))
    assert len(files) > 40
    long = {str(p.relative_to(ROOT)): n for p in files
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long


@pytest.mark.parametrize("package, parts", [
    ("importers/torch", {"__init__", "lowerings", "tracer", "trace", "inputs", "moe", "generation"}),
    ("fodlam/sweeps", {"__init__", "spec", "plan", "parts", "runner", "ray_backend", "output"}),
    ("fodlam/cli", {"__init__", "__main__", "common", "commands", "sweep", "parser"}),
])
def test_rooms_are_packages_of_steps(package, parts):
    pkg = ROOT / package
    assert {p.stem for p in pkg.glob("*.py")} >= parts
    assert not (ROOT / (package + ".py")).exists()
    doc = (pkg / "__init__.py").read_text().split('"""')[1]
    for part in parts - {"__init__", "__main__"}:       # the docstring lists the pipeline
        assert f"``{part}``" in doc, part


def test_generation_tracing_lives_in_the_importers():
    """fodlam.llm costs a traced generation and traces nothing; the importers return it as
    data (a GenerationTrace) and never import costing."""
    llm = (ROOT / "fodlam" / "llm.py").read_text()
    assert "importers" not in llm.split('"""', 2)[2]      # no import of a front end
    assert "def trace_generation" not in llm and "def cost_generation" in llm
    assert "def trace_generation" in (ROOT / "importers" / "torch" / "generation.py").read_text()
    assert "def trace_generation_onnx" in (ROOT / "importers" / "onnx" / "generation.py").read_text()
    import re
    costing = re.compile(r"^\s*(from|import)\s+fodlam(\.(llm|costed|models|engines|api)\b|"
                         r"\s+import\s+(llm|costed|models|engines|api)\b)", re.M)
    for f in (ROOT / "importers").rglob("*.py"):
        assert not costing.search(f.read_text()), f


def test_command_decisions_are_callable_from_python(tmp_path):
    """The CLI prints; the calibration flow, the sweep estimate and the diagnose table are
    Python calls in the layer that owns them."""
    import fodlam.api
    from fodlam import sweeps
    from fodlam.calibration import fit

    cal = fit.calibrate("eyeriss-eie-65nm")
    assert cal.evaluation["loo"]["conv"]["new"]["latency"]["mean"] < 0.07
    assert "[shape_model.conv]" in cal.profile_toml(out=tmp_path / "x.toml")
    data = fodlam.api.diagnose()
    assert data["layers"] and data["average"]
    assert callable(sweeps.estimate) and "estimate" in sweeps.__all__


def test_onnx_public_names_unchanged():
    pytest.importorskip("onnx")
    import fodlam.importers.onnx as imp

    for name in ("LOWERINGS", "import_file", "write_annotated", "load"):
        assert hasattr(imp, name), name
    assert ("", "Conv") in imp.LOWERINGS and ("com.microsoft", "Attention") in imp.LOWERINGS


def test_no_model_or_data_files_at_the_root():
    debris = [p.name for p in ROOT.iterdir() if p.is_file()
              and p.suffix in {".data", ".onnx", ".pt", ".pth", ".bin", ".npz", ".safetensors"}]
    assert not debris


class _Incomplete:
    """Stands in for onnxruntime's SymbolicShapeInference on a model it cannot finish."""

    def __init__(self, *args):
        self.run_ = True
        self.out_mp_ = None

    def _preprocess(self, model):
        self.out_mp_ = model

    def _infer_impl(self):
        self.run_ = False
        return False

    def _update_output_from_vi(self):
        pass


def test_symbolic_shape_fallback_writes_nothing(tmp_path, monkeypatch):
    """onnxruntime's own infer_shapes saves sym_shape_infer_temp.onnx and a <uuid>.data file
    into the current directory when it cannot finish (that is how four such files were once
    committed here); FODLAM's wrapper drops the incomplete result and writes nothing."""
    pytest.importorskip("onnxruntime")
    from onnx import helper

    from fodlam.importers.onnx.shapes import _symbolic_infer

    monkeypatch.chdir(tmp_path)
    g = helper.make_graph([], "g", [], [])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    assert _symbolic_infer(_Incomplete, model) is None
    assert list(Path(tmp_path).iterdir()) == []


def test_every_package_folder_installs():
    """A package folder missing from setup.cfg's list installs without its modules (the
    wheel would lack them): every folder with an __init__.py is listed."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {"fodlam." + ".".join(p.parent.relative_to(ROOT / "fodlam").parts)
             for p in (ROOT / "fodlam").rglob("__init__.py")
             if p.parent.relative_to(ROOT / "fodlam").parts[:1] not in (("importers",), ("calibration",))}
    found |= {"fodlam.importers." + ".".join(p.parent.relative_to(ROOT / "importers").parts)
              for p in (ROOT / "importers").rglob("__init__.py")}
    found = {f.rstrip(".") for f in found} | {"fodlam.calibration"}
    assert found <= listed, found - listed
