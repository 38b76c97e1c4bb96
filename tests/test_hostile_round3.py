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


# ---- 11. names resolve predictably ------------------------------------------------------------

def test_bundled_names_resolve_predictably(tmp_path, monkeypatch):
    from fodlam.accelerator import load_accelerator
    from fodlam.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tpu-v1").mkdir()                       # a folder of the same name
    assert load_accelerator("tpu-v1").name == "tpu-v1"
    (tmp_path / "tpu-v1").rmdir()
    bundled = load_accelerator("tpu-v1")
    (tmp_path / "tpu-v1").write_text(Path(bundled.path).read_text().replace(
        'name = "tpu-v1"', 'name = "mine"'))
    with pytest.raises(ConfigError, match=r"\./tpu-v1"):
        load_accelerator("tpu-v1")
    assert load_accelerator("./tpu-v1").name == "mine"


def test_sweep_rows_carry_the_profile_source_and_labels_stay_unique(folder):
    import shutil

    from fodlam import sweeps as S
    from fodlam.accelerator import load_accelerator
    from fodlam.errors import ConfigError

    (folder / "mine").mkdir()
    shutil.copy(load_accelerator("tpu-v1").path, folder / "mine" / "tpu-v1.toml")
    text = (folder / "mine" / "tpu-v1.toml").read_text().replace("clock_mhz = 700", "clock_mhz = 900")
    assert text != (folder / "mine" / "tpu-v1.toml").read_text()
    (folder / "mine" / "tpu-v1.toml").write_text(text)
    (folder / "s.toml").write_text(
        '[[models]]\ntorch = "models3.py:small"\ninput_shape = [1, 3, 8, 8]\n'
        '[[accelerators]]\nprofile = "tpu-v1"\n[[accelerators]]\nprofile = "mine/tpu-v1.toml"\n')
    with pytest.raises(ConfigError, match="labelled 'tpu-v1'"):
        S.load_sweep(folder / "s.toml")
    (folder / "s.toml").write_text(
        '[[models]]\ntorch = "models3.py:small"\ninput_shape = [1, 3, 8, 8]\n'
        '[[accelerators]]\nprofile = "tpu-v1"\n[[accelerators]]\nprofile = "nvdla-nv-full"\n')
    res = S.run(S.load_sweep(folder / "s.toml"), jobs=1, quiet=True)
    assert [r["accelerator_source"] for r in res.rows] == ["bundled:tpu-v1", "bundled:nvdla-nv-full"]


# ---- 2. one output guard for every command -------------------------------------------------------

@pytest.fixture
def inputs(folder):
    """A project with every kind of input a command reads."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    w = numpy_helper.from_array(np.ones((8, 8), np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
                          initializer=[w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, str(folder / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="w.bin", size_threshold=0)
    assert (folder / "w.bin").is_file()
    (folder / "m.py").write_text(SLOW_MODELS.replace("def small", "def make"))
    (folder / "fodlam.toml").write_text('[[models]]\nname = "m"\ntorch = "m.py:make"\n'
                                        'input_shape = [1, 3, 8, 8]\nmax_energy = "1 J"\n'
                                        '[[models]]\nname = "o"\nonnx = "m.onnx"\nmax_energy = "1 J"\n')
    r = run_cli("check", "--json", "-o", str(folder / "base.json"), cwd=folder)
    assert r.returncode == 0, r.stderr
    cfg = ROOT / "examples" / "configs" / "alexnet.json"
    (folder / "c.json").write_text(cfg.read_text())
    (folder / "link.py").symlink_to(folder / "m.py")
    from fodlam.accelerator import load_accelerator
    (folder / "prof.toml").write_text(Path(load_accelerator().path).read_text())
    return folder


GUARDED = [
    (["torch", "m.py:make", "--input-shape", "1,3,8,8", "-o", "m.py"], "m.py"),
    (["torch", "m.py:make", "--input-shape", "1,3,8,8", "--html", "m.py"], "m.py"),
    (["torch", "m.py:make", "--input-shape", "1,3,8,8", "-o", "link.py"], "m.py"),
    (["torch", "m.py:make", "--input-shape", "1,3,8,8", "-o", "./sub/../m.py"], "m.py"),
    (["llm", "m.py:make", "-o", "m.py"], "m.py"),
    (["llm", "m.py:make", "--html", "m.py"], "m.py"),
    (["report", "m.py:make", "--input-shape", "1,3,8,8", "--html", "m.py"], "m.py"),
    (["check", "--junit", "fodlam.toml"], "fodlam.toml"),
    (["check", "-o", "m.onnx"], "m.onnx"),
    (["check", "-o", "w.bin"], "w.bin"),
    (["check", "--json", "-o", "base.json", "--baseline", "base.json"], "base.json"),
    (["run", "c.json", "-o", "c.json"], "c.json"),
    (["calibrate", "--accelerator", "prof.toml", "--out", "prof.toml"], "prof.toml"),
    (["diagnose", "--accelerator", "prof.toml", "-o", "prof.toml"], "prof.toml"),
    (["torch", "m.py:make", "--input-shape", "1,3,8,8", "--accelerator", "prof.toml", "-o",
      "prof.toml"], "prof.toml"),
]


@pytest.mark.parametrize("argv, victim", GUARDED)
def test_no_command_overwrites_its_inputs(inputs, argv, victim):
    (inputs / "sub").mkdir(exist_ok=True)
    before = {p.name: p.read_bytes() for p in inputs.iterdir() if p.is_file()}
    r = run_cli(*argv, cwd=inputs)
    assert r.returncode == 2, (argv, r.returncode, r.stderr)
    assert "is also an input of this command" in r.stderr
    after = {p.name: p.read_bytes() for p in inputs.iterdir() if p.is_file()}
    assert after[victim] == before[victim]


@pytest.mark.parametrize("flag", ["-o", "--annotate"])
def test_onnx_outputs_never_replace_external_data(inputs, flag):
    before = (inputs / "w.bin").read_bytes()
    r = run_cli("m.onnx", flag, "w.bin", script="fodlam-onnx", cwd=inputs)
    assert r.returncode == 2 and "is also an input" in r.stderr
    assert (inputs / "w.bin").read_bytes() == before


# ---- 1. no NaN past the gate --------------------------------------------------------------------

def test_an_implausible_figure_is_refused_when_the_profile_loads(tmp_path):
    from fodlam.accelerator import load_accelerator
    from fodlam.errors import ConfigError

    text = Path(load_accelerator("tpu-v1").path).read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("dram_bytes_per_s = 34e9", "dram_bytes_per_s = 5e-324")
                   if "dram_bytes_per_s = 34e9" in text else
                   text.replace("[architecture]", "[architecture]\ndram_bytes_per_s = 5e-324", 1))
    with pytest.raises(ConfigError, match="dram_bytes_per_s.*plausible range"):
        load_accelerator(str(bad))
    r = run_cli("torch", "examples.zoo:resnet18", "--input-shape", "1,3,32,32", "--accelerator",
                str(bad), "--max-energy", "1J")
    assert "plausible range" in _one_line_error(r)


def test_a_non_finite_cost_never_leaves(folder, monkeypatch):
    from fodlam.models.roofline import Roofline

    real = Roofline.estimate

    def nan_estimate(self, layer, reference=None):
        from dataclasses import replace

        est = real(self, layer, reference)
        return replace(est, energy_j=float("nan")) if layer.macs else est
    monkeypatch.setattr(Roofline, "estimate", nan_estimate)
    r = run_cli("torch", "models3.py:small", "--input-shape", "1,3,8,8", "--accelerator", "tpu-v1",
                "--max-energy", "1 J", cwd=folder)
    assert "not a finite, non-negative" in _one_line_error(r)
    (folder / "fodlam.toml").write_text('[[models]]\nname = "m"\ntorch = "models3.py:small"\n'
                                        'input_shape = [1, 3, 8, 8]\naccelerator = "tpu-v1"\n'
                                        'max_energy = "1 J"\n')
    r = run_cli("check", cwd=folder)
    assert r.returncode != 0 and " ok" not in r.stdout.split("\n", 2)[-1]
    from fodlam import sweeps as S
    (folder / "s.toml").write_text('[[models]]\ntorch = "models3.py:small"\ninput_shape = [1, 3, 8, 8]\n'
                                   '[[accelerators]]\nprofile = "tpu-v1"\n')
    res = S.run(S.load_sweep(folder / "s.toml"), jobs=1, quiet=True)
    assert [r["status"] for r in res.rows] == ["failed"] and "finite" in res.rows[0]["error"]


def test_the_extremes_of_every_field_cost_finitely_or_fail_in_one_line():
    """Every numeric field of every bundled profile at both ends of its plausible range:
    each engine gives a finite, non-negative cost, or a one-line FodlamError."""
    import math

    from fodlam import layers as L
    from fodlam.accelerator import bundled, load_accelerator, plausible_range
    from fodlam.errors import FodlamError
    from fodlam.models import for_accelerator
    from fodlam.sweeps import apply_overrides, sweepable_fields

    layers = [L.conv(1, 16, 32, (14, 14), 3, 1, 1), L.fc(4, 256, 128),
              L.MatMul(batch=2, m=16, k=32, n=16), L.conv(1, 32, 32, (14, 14), 3, 1, 1, groups=32)]
    tried = 0
    for name in bundled():
        acc = load_accelerator(name)
        for key, value in sweepable_fields(acc).items():
            field = key.rsplit(".", 1)[-1]
            kind = "int" if isinstance(value, int) else "float"
            lo, hi, _ = plausible_range(field, kind)
            for extreme in (lo, hi):
                tried += 1
                try:
                    model = for_accelerator(apply_overrides(acc, ((key, extreme),)))
                    for layer in layers:
                        est = model.estimate(layer)
                        assert math.isfinite(est.energy_j) and est.energy_j >= 0, (name, key, extreme)
                        assert math.isfinite(est.latency_s) and est.latency_s >= 0, (name, key, extreme)
                except FodlamError as e:
                    assert "\n" not in str(e)
    assert tried > 100


# ---- 3. a cache that verifies ---------------------------------------------------------------

def _grid_sweep(folder, n=6, name="s.toml"):
    values = ", ".join(str(500 + 10 * i) for i in range(n))
    (folder / name).write_text('[[models]]\ntorch = "models3.py:small"\ninput_shape = [1, 3, 8, 8]\n'
                               '[[accelerators]]\nprofile = "tpu-v1"\n'
                               f'grid = {{ "architecture.clock_mhz" = [{values}] }}\n')
    return folder / name


def test_a_cache_that_cannot_lie(folder):
    pytest.importorskip("pyarrow")
    _grid_sweep(folder)
    cache = folder / "cache"
    r = run_cli("sweep", "s.toml", "--cache", str(cache), "--chunk-size", "3", "-q", cwd=folder)
    assert r.returncode == 0, r.stderr
    good = (folder / "s-results.csv").read_text()
    parts = sorted(cache.glob("*.parquet"))
    assert len(parts) == 2
    index = (cache / "index.jsonl").read_text().splitlines()
    assert all(len(json.loads(line)["sha256"]) == 64 for line in index)
    # a damaged part, and a part from elsewhere under the same name: recomputed, warned
    parts[0].write_bytes(b"PAR1 not a parquet file")
    parts[1].write_bytes(parts[0].read_bytes())
    r = run_cli("sweep", "s.toml", "--cache", str(cache), "--chunk-size", "3", "-q", cwd=folder)
    assert r.returncode == 0 and r.stderr.count("is not served") == 2, r.stderr
    assert (folder / "s-results.csv").read_text() == good
    # a false row count in the index is never believed
    lines = [json.loads(x) for x in (cache / "index.jsonl").read_text().splitlines()]
    lines[-1]["rows"] = 1000001
    lines[-1]["ok"] = 1000001
    (cache / "index.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    r = run_cli("sweep", "s.toml", "--cache", str(cache), "--chunk-size", "3", cwd=folder)
    assert r.returncode == 0 and "6 of 6 points" in r.stderr, r.stderr
    assert (folder / "s-results.csv").read_text() == good
    # an index that is a folder
    (cache / "index.jsonl").unlink()
    (cache / "index.jsonl").mkdir()
    r = run_cli("sweep", "s.toml", "--cache", str(cache), "-q", cwd=folder)
    assert "index.jsonl is a folder" in _one_line_error(r)


# ---- 4. storage faults as one-line errors -------------------------------------------------------

def test_storage_faults_in_sweeps_are_one_line(folder, monkeypatch):
    pytest.importorskip("pyarrow")
    _grid_sweep(folder)
    r = run_cli("sweep", "s.toml", "--cache", "nope://x", "-q", cwd=folder)
    assert "nope://x" in _one_line_error(r)
    from fodlam.sweeps import parts as P
    real = P.Parts.write
    calls = {"n": 0}

    def full(self, key, rows):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(self, key, rows)
    monkeypatch.setattr(P.Parts, "write", full)
    cache = folder / "cache"
    r = run_cli("sweep", "s.toml", "--cache", str(cache), "--chunk-size", "3", "-q", "--jobs", "1",
                cwd=folder)
    err = _one_line_error(r)
    assert "No space left on device" in err and str(cache) in err
    assert len(list(cache.glob("*.parquet"))) == 1           # the finished chunk is kept
    assert not list(cache.glob(".*tmp"))                     # no temporary file left


def test_a_file_size_limit_is_one_line(folder):
    pytest.importorskip("pyarrow")
    _grid_sweep(folder, n=200)
    r = subprocess.run(["bash", "-c", "ulimit -f 4; exec " + sys.executable + " -c 'import sys; "
                        "from fodlam.cli import main; sys.exit(main(sys.argv[1:]))' sweep s.toml "
                        "--no-parquet -q --no-cache"], cwd=folder, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr[-800:])
    assert "Traceback" not in r.stderr and "File too large" in r.stderr
    assert len([x for x in r.stderr.splitlines() if x.startswith("fodlam: error")]) == 1
    assert not list(folder.glob(".s-results.csv.*"))


# ---- 5. Ray as the pool -----------------------------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1:1", "::::garbage::::", "ray://nowhere"])
def test_a_bad_ray_address_fails_in_seconds(folder, address):
    pytest.importorskip("ray")
    _grid_sweep(folder)
    t = time.perf_counter()
    r = run_cli("sweep", "s.toml", "--backend", "ray", "--address", address, "-q", "--no-cache",
                cwd=folder)
    assert "--address" in _one_line_error(r)
    assert time.perf_counter() - t < 10


def test_sigterm_during_a_ray_sweep_keeps_finished_chunks(folder):
    pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    _grid_sweep(folder, n=3000)
    cache = folder / "cache"
    driver = subprocess.Popen([sys.executable, "-c", "import sys; from fodlam.cli import main; "
                               "sys.exit(main(sys.argv[1:]))", "sweep", "s.toml", "--backend", "ray",
                               "--jobs", "2", "--chunk-size", "64", "-q", "--cache", str(cache)],
                              cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (cache / "index.jsonl").exists():
        time.sleep(0.2)
    assert (cache / "index.jsonl").exists(), "no chunk finished"
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 128 + signal.SIGTERM, err[-1500:]
    assert "Traceback" not in err and "interrupted" in err
    rows = (folder / "s-results.csv").read_text().splitlines()
    assert len(rows) > 1
