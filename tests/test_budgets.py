"""Budgets: fodlam check, baselines, JUnit, GitHub summary, pytest helper."""

import json
import shutil
import xml.etree.ElementTree as ET

import pytest

from conftest import EXAMPLES, run_cli

pytest.importorskip("torch")

OVER = """
[[tool.fodlam.models]]
name = "wide-cnn"
torch = "models:wide_cnn"
input_shape = [1, 3, 64, 64]
max_energy = "1 mJ"
"""


@pytest.fixture
def project(tmp_path):
    dst = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "budget-project", dst,
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return dst


def test_check_passes_in_budget(project):
    r = run_cli("check", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "small-cnn" in r.stdout and "ok" in r.stdout and "headroom" in r.stdout


def test_check_fails_over_budget_with_details(project):
    with open(project / "fodlam.toml", "a") as f:
        f.write(OVER)
    r = run_cli("check", cwd=project)
    assert r.returncode == 1
    out = r.stdout
    assert "wide-cnn" in out and "OVER BUDGET" in out
    assert "budget exceeded for wide-cnn: energy" in out and "exceeds the budget 1 mJ by" in out
    assert "top contributing nodes:" in out and "3" in out  # conv module path "3" etc.
    assert "[1/2] small-cnn" in r.stderr  # progress with several models


def test_check_reads_pyproject_tool_table(project):
    (project / "fodlam.toml").rename(project / "pyproject.toml")
    r = run_cli("check", cwd=project)
    assert r.returncode == 0, r.stderr


def test_check_json_baseline_regression_junit_summary(project, tmp_path):
    base = tmp_path / "base.json"
    r = run_cli("check", "--json", "-o", str(base), cwd=project)
    assert r.returncode == 0, r.stderr
    data = json.loads(base.read_text())
    assert data["schema"] == "fodlam-check" and data["ok"] is True
    m = data["models"][0]
    assert m["energy_j"] > 0 and m["max_energy_j"] == pytest.approx(1e-3) and m["nodes"]
    # make the model 4x wider under the same name: energy rises
    text = (project / "fodlam.toml").read_text().replace("models:small_cnn", "models:wide_cnn")
    text = text.replace('max_energy = "1 mJ"', 'max_energy = "1 J"').replace('"5 ms"', '"1 s"')
    (project / "fodlam.toml").write_text(text)
    summary = tmp_path / "summary.md"
    junit = tmp_path / "junit.xml"
    r = run_cli("check", "--baseline", str(base), "--max-regression", "5%", "--junit", str(junit),
                cwd=project, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.returncode == 1
    assert "vs baseline energy +" in r.stdout and "regression for small-cnn: energy rose" in r.stdout
    assert "->" in r.stdout  # layers that changed most
    root = ET.parse(junit).getroot()
    case = root.find(".//testcase")
    assert case.get("name") == "small-cnn" and case.find("failure") is not None
    assert "| small-cnn |" in summary.read_text() and ":x:" in summary.read_text()
    # within a generous allowance it passes
    r = run_cli("check", "--baseline", str(base), "--max-regression", "10000%", cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_onnx_model(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((64, 10), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    (tmp_path / "fodlam.toml").write_text(
        '[[models]]\nname = "mm"\nonnx = "m.onnx"\ndims = { batch = 4 }\nmax_energy = "1 J"\n')
    r = run_cli("check", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["models"][0]["macs"] == 4 * 64 * 10


@pytest.mark.parametrize("content,needle", [
    ("[tool.fodlam\n", "not valid TOML"),
    ('[[models]]\nname = "a"\ntorch = "m:f"\ninput_shape = [1]\n', "set max_energy"),
    ('[[models]]\nname = "a"\ntorch = "m:f"\nmax_energy = "1 mJ"\n', "needs input_shape"),
    ('[[models]]\nname = "a"\nonnx = "x.onnx"\nmax_energy = "1 mJ"\nbogus = 1\n', "unknown key"),
    ('[[models]]\nname = "a"\nonnx = "x.onnx"\nmax_energy = "lots"\n', "cannot read 'lots'"),
    ('[[models]]\nname = "a"\nonnx = "missing.onnx"\nmax_energy = "1 mJ"\n', "not found"),
])
def test_check_config_errors(tmp_path, content, needle):
    (tmp_path / "fodlam.toml").write_text(content)
    r = run_cli("check", cwd=tmp_path)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_no_budget_file(tmp_path):
    r = run_cli("check", cwd=tmp_path)
    assert r.returncode == 2 and "no budget file" in r.stderr


def test_assert_within_budget(project, monkeypatch):
    import sys
    monkeypatch.syspath_prepend(str(project))
    sys.modules.pop("models", None)
    import models
    from fodlam.testing import assert_within_budget

    prof = assert_within_budget(models.small_cnn(), (1, 3, 64, 64), energy="1 mJ", latency="5 ms")
    assert prof.total_energy_j < 1e-3
    with pytest.raises(AssertionError) as err:
        assert_within_budget(models.wide_cnn(), (1, 3, 64, 64), energy="1 mJ")
    msg = str(err.value)
    assert "over its budget" in msg and "exceeds the budget 1 mJ" in msg and "top layers" in msg
    assert "estimate:" in msg


def test_assert_within_budget_onnx(tmp_path):
    import torch
    from fodlam.testing import assert_within_budget

    path = tmp_path / "lin.onnx"
    torch.onnx.export(torch.nn.Linear(64, 32), (torch.zeros(1, 64),), str(path), dynamo=False)
    assert_within_budget(path, energy="1 J")
    with pytest.raises(AssertionError, match="over its budget"):
        assert_within_budget(str(path), energy="1 fJ" if False else 1e-15)


@pytest.mark.parametrize("content", ["tool = 1\n", "[tool]\nfodlam = 3\n", "models = 5\n",
                                     "[[models]]\nname = 1\nonnx = 2\nmax_energy = 3\n"])
def test_check_odd_toml_values(tmp_path, content):
    (tmp_path / "fodlam.toml").write_text(content)
    r = run_cli("check", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "internal error" not in r.stderr
