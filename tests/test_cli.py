"""The command line as a user meets it: outputs, exit codes, one-line errors."""

import json
import sys

import pytest

from conftest import EXAMPLES, run_cli

ALEXNET = str(EXAMPLES / "configs" / "alexnet.json")


def one_line_error(result, *needles):
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_run_compat_prints_2017_shape():
    r = run_cli("run", "--compat", ALEXNET)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert sorted(out) == ["conv", "fc", "total"]
    assert sorted(out["total"]) == ["energy", "latency"]
    assert out["total"]["energy"] == pytest.approx(0.0321787720877915, rel=1e-12)
    # sorted keys, as in 2017
    assert r.stdout.index('"conv"') < r.stdout.index('"fc"') < r.stdout.index('"total"')


def test_run_default_profile_json_schema():
    r = run_cli("run", ALEXNET)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["schema"] == "fodlam-profile" and out["schema_version"] == 1
    assert set(out["total"]) >= {"macs", "energy_j", "latency_s"}
    assert set(out["by_kind"]) == {"conv", "fc"}
    assert set(out["by_kind"]["conv"]) >= {"count", "macs", "energy_j", "latency_s"}
    node = out["nodes"][0]
    assert set(node) >= {"name", "op", "kind", "macs", "energy_j", "latency_s", "modeled", "method", "how"}
    assert "Table V" in node["how"]
    assert out["batch"] == 1
    assert out["total"]["macs"] == sum(n["macs"] for n in out["nodes"])


def test_run_from_stdin_and_table():
    cfg = json.dumps({"net": "VGG16", "layers": ["conv1_1", "FC6"]})
    r = run_cli("run", "--format", "table", "-", stdin=cfg)
    assert r.returncode == 0, r.stderr
    assert "CONV1-1" in r.stdout and "FC6" in r.stdout and "by kind" in r.stdout


def test_run_output_file(tmp_path):
    out = tmp_path / "p.json"
    r = run_cli("run", ALEXNET, "--output", str(out))
    assert r.returncode == 0 and r.stdout == ""
    assert json.loads(out.read_text())["total"]["macs"] > 0


def test_diagnose_lists_all_reference_layers():
    r = run_cli("diagnose", "--format", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    kinds = [row["kind"] for row in data["layers"]]
    assert kinds.count("conv") == 18 and kinds.count("fc") == 6
    assert set(data["average"]) == {"conv", "fc"}
    for row in data["layers"]:
        assert row["energy_j_per_mac"] == pytest.approx(row["energy_j"] / row["macs"])
    table = run_cli("diagnose")
    assert table.returncode == 0 and "CONV5-3" in table.stdout and "average" in table.stdout


@pytest.mark.parametrize("content,needles", [
    ('{"net": "AlexNet", "layers": ["CONV1",]}', ["malformed JSON", "line 1", "column"]),
    ('{"net": "ResNet", "layers": ["CONV1"]}', ["unknown net", "ResNet"]),
    ('{"net": "AlexNet", "layers": ["CONV6"]}', ["unknown layer 'CONV6'", "did you mean"]),
    ('{"netfile": "nope.json", "layers": ["conv1"]}', ["netfile 'nope.json' not found"]),
    ('{"netfile": "alexnet_deploy.json", "layers": ["relu1"]}', ["'RELU1'", "no MAC count"]),
    ('{"netfile": "alexnet_deploy.json", "layers": ["conv9"]}', ["not in netfile", "did you mean"]),
    ('{"layers": ["CONV1"]}', ["exactly one of 'net'"]),
    ('{"net": "AlexNet", "layers": "CONV1"}', ["'layers' must be a list"]),
    ('[1, 2]', ["JSON object"]),
])
def test_config_errors_are_one_line(tmp_path, content, needles):
    cfg = tmp_path / "bad.json"
    cfg.write_text(content)
    one_line_error(run_cli("run", str(cfg)), *needles)
    one_line_error(run_cli("run", "--compat", str(cfg)), *needles)


def test_missing_file_and_bad_flags(tmp_path):
    one_line_error(run_cli("run", str(tmp_path / "missing.json")), "not found")
    one_line_error(run_cli("run", "--format", "xml", ALEXNET), "invalid choice")
    one_line_error(run_cli("frobnicate"), "invalid choice")
    one_line_error(run_cli("run", ALEXNET, "--max-energy", "five"), "cannot read 'five'")


def test_budget_flags_exit_1_with_top_nodes():
    r = run_cli("run", ALEXNET, "--max-energy", "1 mJ")
    assert r.returncode == 1
    assert "energy" in r.stderr and "exceeds the budget 1 mJ" in r.stderr and "CONV2" in r.stderr
    ok = run_cli("run", ALEXNET, "--max-energy", "1J", "--max-latency", "1s")
    assert ok.returncode == 0, ok.stderr


def test_help_does_not_import_torch_or_onnx():
    code = ("import sys\nfrom fodlam.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "main(['run', %r])\n"
            "bad = [m for m in ('torch', 'onnx', 'onnxruntime', 'numpy') if m in sys.modules]\n"
            "print('IMPORTED', bad)\n" % ALEXNET)
    import subprocess
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "IMPORTED []" in r.stdout, r.stdout + r.stderr


def test_deterministic_json():
    a = run_cli("run", ALEXNET).stdout
    b = run_cli("run", ALEXNET).stdout
    assert a == b
