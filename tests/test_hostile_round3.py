"""Hostile input, round 3 (issue 29): no NaN past the gate, no input overwritten by any
command, a sweep cache that cannot lie, storage faults and Ray as one-line errors, workers
that die with their driver, user text drawn as text, exit codes as documented, clean XML,
names that resolve predictably, locks that name themselves."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

torch = pytest.importorskip("torch")

import fodlam  # noqa: E402

SLOW_MODELS = """
import torch

def small():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
"""


def _one_line_error(r, code=2):
    assert r.returncode == code, (r.returncode, r.stdout[-500:], r.stderr[-1500:])
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert any(line.startswith("fodlam: error") for line in r.stderr.splitlines()), r.stderr
    return r.stderr


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "models3.py").write_text(SLOW_MODELS)
    return tmp_path


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.append(int(p.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ---- 6. workers tied to their driver ----------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_workers_die_with_their_driver(folder, sig):
    (folder / "s.toml").write_text(
        '[[models]]\ntorch = "models3.py:small"\ninput_shape = [1, 3, 64, 64]\n'
        '[[accelerators]]\nprofile = "tpu-v1"\n'
        'grid = { "architecture.clock_mhz" = [' + ", ".join(str(100 + i) for i in range(4000)) + "] }\n")
    driver = subprocess.Popen([sys.executable, "-c", "import sys; from fodlam.cli import main; "
                               "sys.exit(main(sys.argv[1:]))", "sweep", "s.toml", "--jobs", "2",
                               "--chunk-size", "16", "-q", "--no-cache"],
                              cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    workers = []
    deadline = time.time() + 60
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.2)
        workers = [p for p in _children(driver.pid) if _alive(p)]
    assert len(workers) >= 2, "the pool never started"
    driver.send_signal(sig)
    driver.wait(timeout=60)
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "a worker outlived its driver"
    if sig == signal.SIGHUP:               # handled like SIGTERM: finished chunks kept
        assert driver.returncode == 128 + signal.SIGHUP
        assert (folder / "s-results.csv").is_file()


# ---- 8. every ONNX decode behind the error boundary ---------------------------------------

def _onnx_with_initializer(path, raw: bytes, dims):
    import onnx
    from onnx import TensorProto, helper

    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=dims, raw_data=raw)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, dims[0]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, dims[1]])],
                          initializer=[w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize("raw,dims", [(b"\0" * 12, [4, 4]), (b"\0" * 16, [1 << 17, 1 << 17])])
def test_measuring_a_damaged_or_huge_initializer_is_one_line(tmp_path, raw, dims):
    pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    _onnx_with_initializer(path, raw, dims)
    r = run_cli(str(path), "--weight-density", "measure", "--format", "json", script="fodlam-onnx")
    assert "'W'" in _one_line_error(r)


# ---- 10. XML and HTML without control characters -------------------------------------------

def test_junit_and_html_with_control_characters(folder):
    import xml.dom.minidom

    (folder / "fodlam.toml").write_text(
        '[[models]]\nname = "net\\u0001bad"\ntorch = "models3.py:small"\ninput_shape = [1, 3, 8, 8]\n'
        'max_energy = "1 pJ"\n')
    r = run_cli("check", "--junit", str(folder / "j.xml"), cwd=folder)
    assert r.returncode == 1, r.stderr
    text = (folder / "j.xml").read_text()
    assert "\x01" not in text
    xml.dom.minidom.parseString(text)             # well-formed
    from fodlam.units import xml_clean
    assert xml_clean("a\x01b\x1fc\td\n") == "a\ufffdb\ufffdc\td\n"


# ---- 12. locks that name themselves ------------------------------------------------------------

def test_a_lock_held_by_an_unrelated_live_process_is_taken_over(folder):
    from fodlam._io import output_lock

    target = folder / "out.json"
    lock = folder / ".out.json.lock"
    sleeper = subprocess.Popen(["sleep", "30"])       # alive, and not fodlam
    try:
        lock.write_text(json.dumps({"pid": sleeper.pid, "command": "fodlam torch"}))
        with output_lock(target):
            record = json.loads(lock.read_text())
            assert record["pid"] == os.getpid() and record["host"] and "command" in record
        assert not lock.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


# ---- 7. user text is text; reports believe only costs ----------------------------------------

def test_names_with_mathtext_are_drawn_literally(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "dollar.py").write_text(
        "import torch.nn as nn\n"
        "def make():\n"
        "    m = nn.Sequential()\n"
        "    m.add_module('conv$\\\\undefinedcmd{x}$', nn.Conv2d(3, 8, 3))\n"
        "    return m\n")
    r = run_cli("report", f"{tmp_path / 'dollar.py'}:make", "--input-shape", "1,3,16,16",
                "--html", str(tmp_path / "r.html"), "--png", str(tmp_path / "r.png"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def _sweep_csv(path, rows, extra_cols=()):
    cols = ["point", "model", "batch", "accelerator", "overrides", "process_nm", "scaling",
            "status", "error", "macs", "energy_j", "latency_s", "edp_js", "unmodeled_nodes",
            *extra_cols]
    lines = [",".join(cols)]
    for r in rows:
        lines.append(",".join(str(r.get(c, "")) for c in cols))
    path.write_text("\n".join(lines) + "\n")


def test_sweep_reports_read_only_costs(tmp_path):
    pytest.importorskip("matplotlib")
    ok = dict(model="m$\\bad{x}$", batch=1, accelerator="a", status="ok", macs=10, energy_j=1e-3,
              latency_s=1e-3, edp_js=1e-6)
    _sweep_csv(tmp_path / "good.csv", [dict(ok, point=0), dict(ok, point=1, energy_j=2e-3,
                                                                latency_s=5e-4, edp_js=1e-6)])
    r = run_cli("report", str(tmp_path / "good.csv"), "--html", str(tmp_path / "g.html"),
                "--png", str(tmp_path / "g.png"))
    assert r.returncode == 0, r.stderr
    _sweep_csv(tmp_path / "neg.csv", [dict(ok, point=0), dict(ok, point=1, energy_j=-5.0)])
    r = run_cli("report", str(tmp_path / "neg.csv"), "--html", str(tmp_path / "n.html"))
    err = _one_line_error(r)
    assert "row 3" in err and "energy_j" in err and not (tmp_path / "n.html").exists()
    _sweep_csv(tmp_path / "nan.csv", [dict(ok, point=0, latency_s="nan")])
    assert "latency_s" in _one_line_error(run_cli("report", str(tmp_path / "nan.csv"), "--html",
                                                  str(tmp_path / "x.html")))
    big = dict(ok, point=0, error="x" * 200_000, status="failed", energy_j="", latency_s="")
    _sweep_csv(tmp_path / "big.csv", [big, dict(ok, point=1)])
    r = run_cli("report", str(tmp_path / "big.csv"), "--html", str(tmp_path / "b.html"))
    assert r.returncode == 0, r.stderr


def test_a_100000_column_sweep_csv_reports_in_seconds(tmp_path):
    pytest.importorskip("matplotlib")
    extra = [f"architecture.c{i}" for i in range(100_000)]
    ok = dict(model="m", batch=1, accelerator="a", status="ok", macs=10, energy_j=1e-3,
              latency_s=1e-3, edp_js=1e-6)
    _sweep_csv(tmp_path / "wide.csv", [dict(ok, point=i) for i in range(3)], extra)
    t = time.perf_counter()
    r = run_cli("report", str(tmp_path / "wide.csv"), "--html", str(tmp_path / "w.html"))
    assert r.returncode == 0, r.stderr
    assert time.perf_counter() - t < 30


# ---- 9. exit codes, one table, every command ----------------------------------------------------

RAISES = """
import torch

def raises():
    raise ValueError("the factory is broken")

class BadForward(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("the forward is broken")

def bad_forward():
    return BadForward()

def quits():
    raise SystemExit(0)
"""


@pytest.fixture
def codes(tmp_path):
    (tmp_path / "codes.py").write_text(RAISES)
    (tmp_path / "ok.py").write_text(SLOW_MODELS)
    return tmp_path


@pytest.mark.parametrize("argv, code", [
    # bad input: 2
    (["torch", "nope.py:make", "--input-shape", "1,3,8,8"], 2),
    (["onnx-missing"], 2),
    (["run", "missing.json"], 2),
    (["check", "--config", "missing.toml"], 2),
    (["report", "missing.py:make", "--html", "x.html"], 2),
    (["sweep", "missing.toml"], 2),
    (["calibrate", "--data", "missing.csv"], 2),
    (["diagnose", "--accelerator", "no-such-profile"], 2),
    (["llm", "missing.py:make"], 2),
    # user code raising: 1
    (["torch", "codes.py:raises", "--input-shape", "1,3,8,8"], 1),
    (["torch", "codes.py:bad_forward", "--input-shape", "1,3,8,8"], 1),
    (["torch", "codes.py:quits", "--input-shape", "1,3,8,8"], 1),
    (["report", "codes.py:raises", "--input-shape", "1,3,8,8", "--html", "x.html"], 1),
    (["llm", "codes.py:raises"], 1),
    (["llm", "codes.py:quits"], 1),
    # a budget breach: 1
    (["torch", "ok.py:small", "--input-shape", "1,3,8,8", "--max-energy", "1 pJ"], 1),
])
def test_exit_codes_as_documented(codes, argv, code):
    if argv[0] == "onnx-missing":
        r = run_cli("missing.onnx", script="fodlam-onnx", cwd=codes)
    else:
        r = run_cli(*argv, cwd=codes)
    assert r.returncode == code, (argv, r.returncode, r.stderr)
    assert "Traceback" not in r.stderr


def test_budget_models_whose_code_raises_exit_1(codes):
    (codes / "fodlam.toml").write_text(
        '[[models]]\nname = "broken"\ntorch = "codes.py:raises"\ninput_shape = [1, 3, 8, 8]\n'
        'max_energy = "1 J"\n[[models]]\nname = "fine"\ntorch = "ok.py:small"\n'
        'input_shape = [1, 3, 8, 8]\nmax_energy = "1 J"\n')
    r = run_cli("check", cwd=codes)
    assert r.returncode == 1 and "broken" in r.stderr


def test_an_internal_error_exits_3(codes, monkeypatch):
    import fodlam.api

    def boom(*a, **k):
        raise RuntimeError("a bug")
    monkeypatch.setattr(fodlam.api, "profile_ref", boom)
    r = run_cli("torch", "ok.py:small", "--input-shape", "1,3,8,8", cwd=codes)
    assert r.returncode == 3 and "internal error" in r.stderr and "Traceback" not in r.stderr


def test_the_exit_code_table_is_in_the_docs():
    text = (ROOT / "docs" / "robustness.md").read_text()
    assert "## Exit codes" in text
    for line in ("| 0 |", "| 1 |", "| 2 |", "| 3 |"):
        assert line in text
