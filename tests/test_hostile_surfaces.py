"""Hostile input on the newer surfaces: budgets and baselines, sweeps, sweep reports,
calibration and the Python API's arguments. Every case ends in a one-line error (exit 2)
or a correct result: never a bypassed gate, a negative joule, a lost or half-written file,
an orphan process or a hang."""

import json
import math
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
from fodlam.errors import FodlamError  # noqa: E402

MODELS = """
import sys
import torch

def small():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())

def wide():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.Conv2d(64, 64, 3))

def quits():
    sys.exit(0)

def interrupts():
    raise KeyboardInterrupt

class Odd(BaseException):
    pass

def odd():
    raise Odd("not an Exception")

class ExitsInForward(torch.nn.Module):
    def forward(self, x):
        sys.exit(0)

def exits_in_forward():
    return ExitsInForward()
"""


def _one_line_error(r, code=2):
    assert r.returncode == code, (r.returncode, r.stdout[-500:], r.stderr[-1500:])
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("fodlam: error")]
    assert errors, r.stderr
    return r.stderr


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "hostile_models.py").write_text(MODELS)
    return tmp_path


def _budget(folder, *entries):
    text = ""
    for name, factory, energy in entries:
        text += (f'[[models]]\nname = "{name}"\ntorch = "hostile_models:{factory}"\n'
                 f'input_shape = [1, 3, 16, 16]\nmax_energy = "{energy}"\n\n')
    (folder / "fodlam.toml").write_text(text)


# ---- the budget gate ----------------------------------------------------------------------

@pytest.mark.parametrize("factory", ["quits", "interrupts", "odd", "exits_in_forward"])
def test_user_code_cannot_bypass_the_gate(folder, factory):
    _budget(folder, ("bad", factory, "1 J"), ("over", "wide", "1 nJ"))
    r = run_cli("check", cwd=folder)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "bad" in r.stderr and "failed" in r.stderr       # named, marked failed
    assert "OVER BUDGET" in r.stdout and "over" in r.stdout  # the other model still checked


def test_user_code_failure_fails_its_sweep_points_only(folder):
    (folder / "sweep.toml").write_text(
        '[[models]]\nname = "bad"\ntorch = "hostile_models.py:quits"\ninput_shape = [1, 3, 8, 8]\n'
        '[[models]]\nname = "ok"\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, 8]\n'
        '[[accelerators]]\nprofile = "tpu-v1"\n')
    r = run_cli("sweep", str(folder / "sweep.toml"), "--no-parquet", "--no-cache", "--jobs", "1")
    assert r.returncode == 1
    rows = (folder / "sweep-results.csv").read_text().splitlines()
    assert len(rows) == 3 and ",bad," in rows[1] and "failed" in rows[1] and ",ok," in rows[2]


@pytest.mark.parametrize("value", ["nan", "inf", "-5%", "abc"])
def test_max_regression_must_be_a_finite_percentage(folder, tmp_path, value):
    _budget(folder, ("s", "small", "1 J"))
    base = tmp_path / "base.json"
    assert run_cli("check", "--json", "-o", str(base), cwd=folder).returncode == 0
    _one_line_error(run_cli("check", "--baseline", str(base), "--max-regression", value, cwd=folder))


@pytest.mark.parametrize("models", [
    [1, 2], [{"energy_j": 1.0, "latency_s": 1.0}], [{"name": "s", "energy_j": "abc", "latency_s": 1}],
    [{"name": "s", "energy_j": float("nan"), "latency_s": 1.0}],
    [{"name": "s", "energy_j": -1.0, "latency_s": 1.0}], [{"name": "s", "energy_j": 1.0}],
    [{"name": "s", "energy_j": 1, "latency_s": 1, "nodes": [1]}],
    [{"name": "s", "energy_j": 1, "latency_s": 1}, {"name": "s", "energy_j": 1, "latency_s": 1}],
])
def test_hostile_baselines_are_one_line_errors(folder, tmp_path, models):
    _budget(folder, ("s", "small", "1 J"))
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"schema": "fodlam-check", "models": models}))
    _one_line_error(run_cli("check", "--baseline", str(base), "--max-regression", "5%", cwd=folder))


@pytest.mark.parametrize("line", ["accelerator = 5", "accelerator = [1]", "accelerator = true"])
def test_budget_accelerator_must_be_a_string(folder, line):
    _budget(folder, ("s", "small", "1 J"))
    text = (folder / "fodlam.toml").read_text()
    (folder / "fodlam.toml").write_text(line + "\n" + text)
    _one_line_error(run_cli("check", cwd=folder))


# ---- impossible numbers -------------------------------------------------------------------

@pytest.mark.parametrize("node", ["-7", "0", "1e-300", "1e9", "nan", "inf"])
def test_sweep_entry_process_node_is_range_checked(folder, node):
    (folder / "sweep.toml").write_text(
        '[[models]]\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, 8]\n'
        f'[[accelerators]]\nprofile = "tpu-v1"\nnodes = [{node}]\n')
    _one_line_error(run_cli("sweep", str(folder / "sweep.toml"), "--no-parquet", "--no-cache"))
    assert not (folder / "sweep-results.csv").exists()


@pytest.mark.parametrize("kwargs", [dict(node=-7), dict(node=0), dict(node=float("nan")),
                                    dict(node=1e9), dict(accelerator=42), dict(accelerator=[]),
                                    dict(accelerator=["tpu-v1", 42]),
                                    dict(batch=-3), dict(batch=0), dict(batch=True),
                                    dict(activation_density={"no.such.module": 0.5}),
                                    dict(activation_density=2.0)])
def test_api_arguments_are_checked(kwargs):
    with pytest.raises(FodlamError):
        fodlam.profile(torch.nn.Linear(4, 3), (2, 4), **kwargs)


@pytest.mark.parametrize("table,line", [
    ("", "process_nm = 0"), ("", "process_nm = -28"), ("[architecture]", "clock_mhz = 0"),
    ("[architecture]", "dram_bytes_per_s = 0"), ("[architecture]", "array_k = 0.5"),
    ("[power]", "idle_w = -1"), ("[architecture]", "onchip_bytes = inf")])
def test_profile_figures_out_of_range_are_one_line_errors(tmp_path, table, line):
    from fodlam.calibration import ACCELERATORS_DIR

    key = line.split(" =")[0]
    out, current = [], ""
    for text in (ACCELERATORS_DIR / "tpu-v1.toml").read_text().splitlines():
        if text.startswith("["):
            current = text.split("#")[0].strip()
        if current == table and text.startswith(f"{key} ="):
            text = line
        out.append(text)
    bad = tmp_path / "bad.toml"
    bad.write_text("\n".join(out) + "\n")
    r = run_cli("torch", "examples.zoo:resnet18", "--input-shape", "1,3,32,32", "--accelerator",
                str(bad), "--node", "7")
    assert key in _one_line_error(r)


@pytest.mark.parametrize("cell", ["1e300", "-1", "nan", "inf"])
def test_calibrate_never_writes_a_profile_holding_inf(tmp_path, cell):
    from conftest import SHARED  # noqa: F401  (the bundled data need no shared folder)
    rows = ["kind,network,layer,batch,in_channels,out_channels,in_h,in_w,kernel,stride,padding,"
            "latency_ms,power_mw"]
    for i, (c, m, h) in enumerate([(3, 96, 227), (48, 256, 27), (256, 384, 13), (192, 384, 13)]):
        latency = cell if i == 0 else str(10 + i)
        rows.append(f"conv,Net,L{i},1,{c},{m},{h},{h},3,1,1,{latency},250")
    data = tmp_path / "data.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out.toml"
    r = run_cli("calibrate", "--data", str(data), "--out", str(out))
    if r.returncode == 0:  # a usable fit: the profile loads and holds finite numbers only
        acc = fodlam.load_accelerator(str(out))
        assert all(math.isfinite(v) for v in vars(acc.shape_model.conv).values())
    else:
        _one_line_error(r)
        assert not out.exists()


def test_calibrate_process_nm_out_of_range(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("kind,batch,in_channels,out_channels,in_h,in_w,kernel,latency_ms,power_mw,process_nm\n"
                    "conv,1,3,8,16,16,3,1,100,1e-300\n")
    _one_line_error(run_cli("calibrate", "--data", str(data)))


def test_calibrate_degenerate_data_is_a_clear_error_fast(tmp_path):
    data = tmp_path / "d.csv"
    row = "conv,1,64,64,28,28,3,1,1,2.5,200,1.2\n"
    data.write_text("kind,batch,in_channels,out_channels,in_h,in_w,kernel,stride,padding,latency_ms,"
                    "power_mw,glb_accesses_mb\n" + row * 3)
    t = time.perf_counter()
    r = run_cli("calibrate", "--data", str(data))
    assert time.perf_counter() - t < 30
    assert "same layer" in _one_line_error(r)


# ---- nothing lost, nothing half-written ---------------------------------------------------

@pytest.mark.parametrize("key,value", [("architecture.clock_mhz", 0), ("architecture.array_k", 0.5),
                                       ("architecture.dram_bytes_per_s", 0), ("architecture.array_n", 0),
                                       ("architecture.vector_width", 0), ("power.busy_w", 1)])
def test_bad_override_is_refused_before_anything_runs(folder, key, value):
    (folder / "sweep.toml").write_text(
        '[[models]]\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, 8]\n'
        f'[[accelerators]]\nprofile = "tpu-v1"\npoints = [{{ "{key}" = {value} }}]\n')
    assert key.split(".")[1] in _one_line_error(
        run_cli("sweep", str(folder / "sweep.toml"), "--no-parquet", "--no-cache"))


def test_a_point_that_cannot_be_costed_fails_alone(folder, monkeypatch):
    from fodlam import sweeps as S

    (folder / "sweep.toml").write_text(
        '[[models]]\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, 8]\n'
        '[[accelerators]]\nprofile = "tpu-v1"\ngrid = { "architecture.clock_mhz" = [500, 700, 900] }\n')
    real = S.cost_nodes

    def flaky(nodes, acc, **kw):
        if acc.architecture.clock_mhz == 700:
            raise ZeroDivisionError("division by zero")
        return real(nodes, acc, **kw)
    monkeypatch.setattr(S.plan, "cost_nodes", flaky)     # where run_chunk looks it up
    res = S.run(S.load_sweep(folder / "sweep.toml"), jobs=1, quiet=True)
    assert [r["status"] for r in res.rows] == ["ok", "failed", "ok"]
    assert "ZeroDivisionError" in res.rows[1]["error"]


def test_second_writer_of_a_sweep_output_gets_an_error(folder):
    from fodlam._io import output_lock

    (folder / "sweep.toml").write_text(
        '[[models]]\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, 8]\n'
        '[[accelerators]]\nprofile = "tpu-v1"\n')
    prefix = folder / "out"
    # another fodlam process holds the lock (a stand-in whose command line names fodlam)
    other = subprocess.Popen([sys.executable, "-c", "import time  # fodlam sweep\ntime.sleep(60)"])
    try:
        with output_lock(prefix):
            lock = prefix.with_name(".out.lock")
            lock.write_text(str(other.pid))
            r = run_cli("sweep", str(folder / "sweep.toml"), "-o", str(prefix), "--no-parquet", "--no-cache")
            err = _one_line_error(r)
            assert "being written by another fodlam process" in err and ".out.lock" in err
            lock.write_text(str(os.getpid()))
    finally:
        other.kill()
        other.wait()
    assert not (folder / "out.csv").exists()
    # a lock whose writer is gone is taken over
    lock.write_text("999999999")
    assert run_cli("sweep", str(folder / "sweep.toml"), "-o", str(prefix), "--no-parquet",
                   "--no-cache").returncode == 0
    assert not lock.exists()


def test_failed_write_leaves_the_previous_output_intact(folder, monkeypatch):
    from fodlam import _io, sweeps as S

    (folder / "sweep.toml").write_text(
        '[[models]]\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, 8]\n'
        '[[accelerators]]\nprofile = "tpu-v1"\n')
    assert run_cli("sweep", str(folder / "sweep.toml"), "--no-parquet", "--no-cache").returncode == 0
    csv_path = folder / "sweep-results.csv"
    before = csv_path.read_bytes()
    real_replace = os.replace

    def interrupted(src, dst):
        raise KeyboardInterrupt
    monkeypatch.setattr(_io.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        S.write_csv(csv_path, S.load_sweep(folder / "sweep.toml"), [])
    monkeypatch.setattr(_io.os, "replace", real_replace)
    assert csv_path.read_bytes() == before
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_outputs_never_overwrite_inputs(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("kind,batch,in_channels,out_channels,in_h,in_w,kernel,latency_ms,power_mw\n"
                    "conv,1,3,8,16,16,3,1,100\n")
    before = data.read_bytes()
    assert "also an input" in _one_line_error(run_cli("calibrate", "--data", str(data), "--out", str(data)))
    assert data.read_bytes() == before
    cfg = ROOT / "examples" / "configs" / "alexnet.json"
    assert "also an input" in _one_line_error(run_cli("report", str(cfg), "--html", str(cfg)))


def test_failed_report_leaves_no_empty_file(tmp_path):
    out = tmp_path / "r.html"
    _one_line_error(run_cli("report", str(tmp_path / "missing.onnx"), "--html", str(out)))
    assert not out.exists()


def test_hostile_cache_index_lines_are_recomputed(folder):
    from fodlam import sweeps as S

    (folder / "sweep.toml").write_text(
        '[[models]]\nname = "real"\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, 8]\n'
        '[[accelerators]]\nprofile = "tpu-v1"\ngrid = { "architecture.clock_mhz" = [500, 700, 900, 1100] }\n')
    spec = S.load_sweep(folder / "sweep.toml")
    cache = folder / "parts"
    clean = S.run(spec, jobs=1, cache_path=cache, chunk_size=2, quiet=True)
    lines = (cache / "index.jsonl").read_text().splitlines()
    assert len(lines) == 2
    forged = json.loads(lines[0])
    forged["rows"] = "many"
    (cache / "index.jsonl").write_bytes(b"\xff\xfe not utf-8\n" + b"[1, 2]\n" + b'{"key": 5, "rows": 1}\n'
                                        + json.dumps(forged).encode() + b"\n" + lines[1].encode() + b"\n")
    again = S.run(spec, jobs=1, cache_path=cache, chunk_size=2, quiet=True)
    assert [r["model"] for r in again.rows] == ["real"] * 4
    assert [r["point"] for r in again.rows] == [0, 1, 2, 3]
    assert again.cached == 2 and again.computed == 2
    assert again.rows == clean.rows
    # a part that vanished is recomputed even though the index lists it
    next(cache.glob("*.parquet")).unlink()
    third = S.run(spec, jobs=1, cache_path=cache, chunk_size=2, quiet=True)
    assert third.computed == 2 and third.rows == clean.rows


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "folder"])
def test_special_files_as_sweep_models_do_not_hang(folder, special):
    if special == "fifo":
        path = folder / "pipe.onnx"
        os.mkfifo(path)
    elif special == "folder":
        path = folder / "dir.onnx"
        path.mkdir()
    else:
        path = Path(special)
    (folder / "sweep.toml").write_text(f'[[models]]\nonnx = "{path}"\n[[accelerators]]\nprofile = "tpu-v1"\n')
    t = time.perf_counter()
    r = run_cli("sweep", str(folder / "sweep.toml"), "--no-parquet", "--no-cache")
    assert time.perf_counter() - t < 20
    assert r.returncode == 1 and "not a regular file" in r.stderr


def test_sigterm_stops_the_workers_and_keeps_finished_points(folder):
    (folder / "sweep.toml").write_text(
        '[[models]]\ntorch = "hostile_models.py:wide"\ninput_shape = [1, 3, 64, 64]\n'
        '[[accelerators]]\nprofile = "tpu-v1"\n'
        'grid = { "architecture.clock_mhz" = [' + ", ".join(str(100 + i) for i in range(400)) + "],"
        ' "architecture.array_k" = [' + ", ".join(str(8 + i) for i in range(60)) + "] }\n")
    code = ("import sys; from fodlam.cli import main; "
            "sys.exit(main(['sweep', sys.argv[1], '--jobs', '2', '--no-parquet', '-q', '--chunk-size', '400']))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder / "sweep.toml")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    cache = folder / "sweep-results.parts" / "index.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 3):
        time.sleep(0.1)
    assert cache.exists(), "no chunk finished in time"
    children = _children(proc.pid)
    assert children, "the sweep started no workers"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()[-2000:]
    time.sleep(0.5)
    assert [c for c in children if _alive(c)] == [], "a worker outlived the sweep"
    kept = [json.loads(line) for line in cache.read_text().splitlines()]
    assert kept and len(kept) < 60                     # stopped part-way: 24,000 points, 60 chunks
    rows = (folder / "sweep-results.csv").read_text().splitlines()
    assert len(rows) - 1 == sum(k["rows"] for k in kept)   # every finished chunk is in the output
    # the rerun costs only the chunks that were missing
    r = run_cli("sweep", str(folder / "sweep.toml"), "--no-parquet", "-q", "--chunk-size", "400",
                "--jobs", "2", isolated=True)
    assert r.returncode == 0, r.stderr[-2000:]
    done = sum(k["rows"] for k in kept)
    assert f"({24000 - done} computed, {done} from the cache, 0 failed)" in r.stderr
    assert len((folder / "sweep-results.csv").read_text().splitlines()) == 24001


def _children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


# ---- no silent surprises ------------------------------------------------------------------

@pytest.mark.parametrize("entry,needle", [
    ('clock_mhz = 1\narchitecture.clock_mhz = 800\ngrid = { "architecture.clock_mhz" = [500, 700] }',
     "both fixed"),
    ('scaling = ["dennard"]', "scaling"),
    ('scaling = "moore"', "scaling"),
])
def test_sweep_entry_surprises_are_errors(folder, entry, needle):
    entry = entry.replace("clock_mhz = 1\n", "")
    (folder / "sweep.toml").write_text(
        '[[models]]\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, 8]\n'
        f'[[accelerators]]\nprofile = "tpu-v1"\n{entry}\n')
    assert needle in _one_line_error(run_cli("sweep", str(folder / "sweep.toml"), "--no-parquet",
                                             "--no-cache"))


@pytest.mark.parametrize("models", [
    '[[models]]\nname = "m"\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, 8]\n'
    '[[models]]\nname = "m"\ntorch = "hostile_models.py:wide"\ninput_shape = [1, 3, 8, 8]\n',
    '[[models]]\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, 8]\ndims = { batch = true }\n',
    '[[models]]\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, 8]\nbogus = 1\n',
    '[[models]]\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, true]\n',
])
def test_sweep_model_surprises_are_errors(folder, models):
    (folder / "sweep.toml").write_text(models + '[[accelerators]]\nprofile = "tpu-v1"\n')
    _one_line_error(run_cli("sweep", str(folder / "sweep.toml"), "--no-parquet", "--no-cache"))


@pytest.mark.parametrize("flag", [("--top", "-1"), ("--jobs", "0"), ("--jobs", "-3")])
def test_sweep_flags_out_of_range(folder, flag):
    (folder / "sweep.toml").write_text(
        '[[models]]\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, 8]\n'
        '[[accelerators]]\nprofile = "tpu-v1"\n')
    _one_line_error(run_cli("sweep", str(folder / "sweep.toml"), "--no-parquet", "--no-cache", *flag))


def test_more_jobs_than_points_starts_no_idle_workers(folder, monkeypatch):
    from concurrent import futures

    from fodlam import sweeps as S

    started = []
    real = futures.ProcessPoolExecutor

    class Counting(real):
        def __init__(self, workers, **kw):
            started.append(workers)
            super().__init__(workers, **kw)
    monkeypatch.setattr(futures, "ProcessPoolExecutor", Counting)
    (folder / "sweep.toml").write_text(
        '[[models]]\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, 8]\n'
        '[[accelerators]]\nprofile = "tpu-v1"\ngrid = { "architecture.clock_mhz" = [500, 700] }\n')
    res = S.run(S.load_sweep(folder / "sweep.toml"), jobs=40, quiet=True, chunk_size=1)
    assert not res.failed and started and max(started) <= 2


def test_sweep_report_embeds_parseable_json(folder, tmp_path):
    import re

    pytest.importorskip("matplotlib")
    (folder / "sweep.toml").write_text(
        '[[models]]\nname = "a<b>&\\"c"\ntorch = "hostile_models.py:small"\ninput_shape = [1, 3, 8, 8]\n'
        '[[accelerators]]\nprofile = "tpu-v1"\ngrid = { "architecture.clock_mhz" = [500, 700] }\n')
    assert run_cli("sweep", str(folder / "sweep.toml"), "--no-parquet", "--no-cache").returncode == 0
    out = tmp_path / "r.html"
    assert run_cli("report", str(folder / "sweep-results.csv"), "--html", str(out)).returncode == 0
    text = out.read_text()
    blob = re.search(r'<script type="application/json" id="sweep-data">(.*?)</script>', text, re.S).group(1)
    data = json.loads(blob)
    assert data["models"] == ['a<b>&"c'] and data["points"] == 2


def test_sweep_report_streams_and_samples(tmp_path):
    from fodlam.report import sweep as R

    def rows(n):
        for i in range(n):
            yield {"point": i, "model": "m", "batch": 1, "accelerator": "x", "status": "ok",
                   "energy_j": 1.0 + (i * 7919 % 1000) / 1000, "latency_s": 1.0 + (i * 104729 % 997) / 997,
                   "edp_js": 1.0, "architecture.clock_mhz": float(i % 5)}
    s = R.Summary(rows(50000), sample=1000)
    assert s.points == 50000 and s.ok == 50000 and len(s.sample) == 1000 and s.sampled
    exact = R.front(list(rows(50000)))
    assert s.fronts["m @ batch 1"] == exact                 # fronts use every row
    assert set(R.sensitivity(s)) == {"architecture.clock_mhz"}


def test_annotate_refuses_constant_external_data_outside_the_folder(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    t = helper.make_tensor("c", TensorProto.FLOAT, [4], [0.0] * 4)
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "16")):
        e = t.external_data.add()
        e.key, e.value = k, v
    const = helper.make_node("Constant", [], ["c"], value=t)
    add = helper.make_node("Add", ["x", "c"], ["y"])
    g = helper.make_graph([const, add], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "sub" / "m.onnx"
    path.parent.mkdir()
    onnx.save(model, str(path))
    out = tmp_path / "annotated.onnx"
    r = run_cli("onnx", str(path), "--annotate", str(out), "--format", "json")
    assert "outside the model's folder" in _one_line_error(r)
    assert not out.exists()
