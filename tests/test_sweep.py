"""Design-space sweeps: spec validation, costs equal a direct profile, deterministic output
whatever the worker count, resumable cache, failures, Pareto fronts, the Ray backend and the
report."""

import json
import time
import sys

import pytest

import fodlam
from fodlam import sweeps as S
from fodlam.errors import ConfigError

from conftest import ROOT, run_cli

torch = pytest.importorskip("torch")


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.fc = torch.nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def small():
    return Small()


@pytest.fixture
def project(tmp_path):
    """A sweep over an exported ONNX model and a torch factory, on two profiles."""
    torch.onnx.export(Small().eval(), (torch.randn(1, 3, 8, 8),), str(tmp_path / "small.onnx"),
                      dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    (tmp_path / "models.py").write_text(
        "import torch\n"
        "class Tiny(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.a = torch.nn.Linear(32, 64)\n"
        "        self.b = torch.nn.Linear(64, 8)\n"
        "    def forward(self, x):\n"
        "        return self.b(torch.relu(self.a(x)))\n"
        "def tiny():\n"
        "    return Tiny()\n")
    write(tmp_path, grid='{ "architecture.array_k" = [32, 64], "architecture.clock_mhz" = [500, 1000] }')
    return tmp_path


def write(folder, grid, extra="", batches="[1, 2]"):
    (folder / "sweep.toml").write_text(f"""
[sweep]
batches = {batches}
nodes = [28, 16]

[[models]]
onnx = "*.onnx"

[[models]]
torch = "{folder / 'models.py'}:tiny"
input_shape = [4, 32]

[[accelerators]]
profile = "nvdla-nv-full"
grid = {grid}

[[accelerators]]
profile = "eyeriss-eie-65nm"
{extra}
""")


def test_points_and_costs_equal_a_direct_profile(project):
    spec = S.load_sweep(project / "sweep.toml")
    assert len(spec.points) == 2 * 2 * (4 + 1) * 2          # models x batches x accels x nodes
    res = S.run(spec, jobs=1, quiet=True)
    assert not res.failed and res.computed == len(spec.points)
    row = next(r for r in res.rows if r["model"] == "small" and r["batch"] == 2
               and r["accelerator"] == "nvdla-nv-full" and r["process_nm"] == 16.0
               and json.loads(r["overrides"]) == {"architecture.array_k": 64, "architecture.clock_mhz": 1000})
    acc = S.apply_overrides(fodlam.load_accelerator("nvdla-nv-full"),
                            (("architecture.array_k", 64), ("architecture.clock_mhz", 1000))).at_node(16, "dennard")
    direct = fodlam.profile_onnx(project / "small.onnx", accelerator=acc, batch=2)
    assert row["energy_j"] == pytest.approx(direct.total_energy_j, rel=1e-12)
    assert row["latency_s"] == pytest.approx(direct.total_latency_s, rel=1e-12)
    assert row["macs"] == direct.total_macs and row["edp_js"] == row["energy_j"] * row["latency_s"]
    # the overrides matter: a faster clock never makes the same layer slower
    slow = next(r for r in res.rows if r["model"] == "small" and r["batch"] == 2 and r["process_nm"] == 16.0
                and json.loads(r["overrides"] or "{}") == {"architecture.array_k": 64, "architecture.clock_mhz": 500})
    assert slow["latency_s"] > row["latency_s"]


def test_output_identical_for_one_and_two_workers(project):
    out = {}
    for jobs in (1, 2):
        r = run_cli("sweep", str(project / "sweep.toml"), "-o", str(project / f"out{jobs}"), "--jobs",
                    str(jobs), "--no-cache", "-q")
        assert r.returncode == 0, r.stderr
        out[jobs] = [(project / f"out{jobs}.{ext}").read_bytes() for ext in ("csv", "parquet")]
    assert out[1] == out[2]
    header = out[1][0].decode().splitlines()[0].split(",")
    for col in ("model", "accelerator", "overrides", "process_nm", "batch", "macs", "energy_j",
                "latency_s", "edp_js", "energy_j_conv", "latency_s_fc", "architecture.array_k"):
        assert col in header, col


def test_cache_resumes_and_extends(project):
    cache = project / "parts"
    first = S.run(S.load_sweep(project / "sweep.toml"), jobs=1, cache_path=cache, quiet=True)
    again = S.run(S.load_sweep(project / "sweep.toml"), jobs=1, cache_path=cache, quiet=True)
    assert again.computed == 0 and again.cached == len(first.rows)
    assert again.rows == first.rows
    # the cache is an index of finished chunks beside their parts
    index = (cache / "index.jsonl").read_text().splitlines()
    assert len(index) == len(list(cache.glob("*.parquet"))) == 2 * 2 * 2   # models x batches x entries
    # extend the sweep with another accelerator entry: only its points are computed
    write(project, grid='{ "architecture.array_k" = [32, 64], "architecture.clock_mhz" = [500, 1000] }',
          extra='[[accelerators]]\nprofile = "tpu-v1"\n')
    more = S.run(S.load_sweep(project / "sweep.toml"), jobs=2, cache_path=cache, quiet=True)
    assert more.cached == len(first.rows) and more.computed == 2 * 2 * 2
    # changing an entry's axes recomputes that entry's chunks, and only them
    write(project, grid='{ "architecture.array_k" = [32, 64, 128], "architecture.clock_mhz" = [500, 1000] }',
          extra='[[accelerators]]\nprofile = "tpu-v1"\n')
    grown = S.run(S.load_sweep(project / "sweep.toml"), jobs=1, cache_path=cache, quiet=True)
    assert grown.computed == 2 * 2 * 6 * 2 and grown.cached == 2 * 2 * (2 + 2)


def test_interrupt_keeps_finished_points(project, monkeypatch):
    cache = project / "c.jsonl"
    calls = {"n": 0}
    real = S.run_chunk

    def flaky(nodes, accels):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(nodes, accels)

    monkeypatch.setattr(S.parts, "run_chunk", flaky)     # where chunk_rows looks it up
    res = S.run(S.load_sweep(project / "sweep.toml"), jobs=1, cache_path=cache, chunk_size=5, quiet=True)
    # chunks of at most 5 points within each accelerator entry (8 and 2 points): 5 + 3 done
    assert res.interrupted and res.computed == 8 and len(res.rows) == 8
    assert all(r["status"] == "ok" for r in res.rows)
    monkeypatch.setattr(S.parts, "run_chunk", real)
    rest = S.run(S.load_sweep(project / "sweep.toml"), jobs=1, cache_path=cache, chunk_size=5, quiet=True)
    assert rest.cached == 8 and rest.computed == 32 and not rest.failed


def test_failed_model_is_reported_once_and_exits_1(project):
    (project / "broken.onnx").write_bytes(b"not a model")
    r = run_cli("sweep", str(project / "sweep.toml"), "-o", str(project / "res"), "--no-cache", "-q")
    assert r.returncode == 1
    assert r.stderr.count("broken failed to import") == 1 and "Traceback" not in r.stderr
    rows = S.read_results(project / "res.csv")
    broken = [x for x in rows if x["model"] == "broken"]
    assert broken and all(x["status"] == "failed" and "not an ONNX model" in x["error"] for x in broken)
    assert all(x["status"] == "ok" for x in rows if x["model"] != "broken")


@pytest.mark.parametrize("grid,needle", [
    ('{ "architecture.pe_rows" = [8] }', "no numeric field 'architecture.pe_rows'"),
    ('{ "roofline.peak_macs_per_s" = [1e12] }', "'roofline.peak_macs_per_s' that its cost model reads"),
    ('{ "architecture.array_k" = ["wide"] }', "is not a finite number"),
    ('{ "architecture.array_k" = [] }', "non-empty list"),
])
def test_bad_overrides_are_one_line_errors(project, grid, needle):
    write(project, grid=grid)
    with pytest.raises(ConfigError) as e:
        S.load_sweep(project / "sweep.toml")
    assert needle in str(e.value)
    r = run_cli("sweep", str(project / "sweep.toml"), "--no-cache")
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_pareto_front():
    rows = [{"model": "m", "batch": 1, "status": "ok", "energy_j": e, "latency_s": t, "edp_js": e * t}
            for e, t in ((1, 5), (2, 2), (5, 1), (3, 3), (6, 6))]
    front = S.pareto(rows)["m @ batch 1"]
    assert [(r["energy_j"], r["latency_s"]) for r in front] == [(5, 1), (2, 2), (1, 5)]
    assert [r["edp_js"] for r in S.top(rows, 2)["m @ batch 1"]] == [4, 5]


def test_cli_pareto_and_report(project, tmp_path):
    r = run_cli("sweep", str(project / "sweep.toml"), "-o", str(project / "res"), "--pareto", "-q")
    assert r.returncode == 0, r.stderr
    assert "small @ batch 1: energy-latency Pareto front" in r.stdout
    html = tmp_path / "sweep.html"
    r = run_cli("report", str(project / "res.parquet"), "--html", str(html), "--png", str(tmp_path / "s.png"))
    assert r.returncode == 0, r.stderr
    text = html.read_text()
    assert "Pareto" in text and "data:image/png;base64," in text and "http" not in text.split("<body")[1]
    from test_report import CHROMIUM, render_in_browser
    if CHROMIUM:
        dom, console = render_in_browser(html, tmp_path)
        assert 'data-ready="1"' in dom and not console
        assert 'id="points">40<' in dom


def test_ray_backend_equals_the_process_pool(project):
    ray = pytest.importorskip("ray")
    spec = S.load_sweep(project / "sweep.toml")
    local = S.run(spec, jobs=2, quiet=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = S.run(spec, jobs=2, backend="ray", quiet=True)
    finally:
        ray.shutdown()
    assert remote.rows == local.rows and not remote.failed
    # the workers wrote the parts; the final files are the process pool's, byte for byte
    for res, name in ((local, "local"), (remote, "ray")):
        S.write_csv(project / f"{name}.csv", spec, res.iter_rows())
        S.write_parquet(project / f"{name}.parquet", spec, res)
    for ext in ("csv", "parquet"):
        assert (project / f"local.{ext}").read_bytes() == (project / f"ray.{ext}").read_bytes()


def test_sweep_imports_no_heavy_package_until_used():
    import subprocess
    code = ("import sys\nimport fodlam.sweeps, fodlam.cli\n"
            "print('IMPORTED', [m for m in ('ray', 'pyarrow', 'tqdm', 'torch') if m in sys.modules])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "IMPORTED []" in r.stdout, r.stdout + r.stderr


def test_fodlam_sweep_function(project):
    res = fodlam.sweep(project / "sweep.toml", jobs=1, output=project / "api")
    assert not res.failed and len(res.rows) == 40
    assert (project / "api.csv").is_file() and (project / "api.parquet").is_file()
    assert S.read_results(project / "api.csv")[0]["model"] == res.rows[0]["model"]


def test_fields_written_in_the_accelerator_entry_are_grid_axes(tmp_path):
    (tmp_path / "s.toml").write_text("""
[sweep]
process_nm = [28]

[[models]]
torch = "examples.zoo:TwoInputNet"
input_shape = [[1, 3, 16, 16], [1, 10]]

[[accelerators]]
profile = "eyeriss-eie-65nm"
architecture.pe_rows = [8, 12, 16, 32]
architecture.clock_mhz = 250

[[accelerators]]
profile = "tpu-v1"
process_nm = [16, 7]
scaling = "stillmaker-baas"
""")
    spec = S.load_sweep(tmp_path / "s.toml")
    assert [dict(a.overrides) for a in spec.accels][:4] == [
        {"architecture.pe_rows": r, "architecture.clock_mhz": 250} for r in (8, 12, 16, 32)]
    assert [(a.process_nm, a.scaling) for a in spec.accels] == [(28.0, "dennard")] * 4 + [
        (16.0, "stillmaker-baas"), (7.0, "stillmaker-baas")]
    res = S.run(spec, jobs=1, quiet=True)
    assert not res.failed and len(res.rows) == 6
    lat = [r["latency_s"] for r in res.rows[:4]]
    assert lat[0] >= lat[3]                      # more PE rows never slower


def test_points_are_lazy_and_a_typo_in_a_huge_grid_is_reported_at_once(tmp_path):
    axis = ", ".join(str(8 + i) for i in range(1000))
    text = ('[[models]]\ntorch = "examples.zoo:TwoInputNet"\ninput_shape = [[1, 3, 16, 16], [1, 10]]\n'
            '[[accelerators]]\nprofile = "tpu-v1"\n'
            f'grid = {{ "architecture.array_k" = [{axis}], "architecture.array_n" = [{axis}], '
            f'"architecture.clock_mhz" = [{axis}] }}\n')
    (tmp_path / "big.toml").write_text(text)
    t = time.perf_counter()
    spec = S.load_sweep(tmp_path / "big.toml")
    assert time.perf_counter() - t < 2.0
    assert len(spec.points) == 10 ** 9
    last = spec.points[10 ** 9 - 1]
    assert dict(last.accel.overrides) == {"architecture.array_k": 1007, "architecture.array_n": 1007,
                                          "architecture.clock_mhz": 1007}
    assert dict(spec.points[1234567].accel.overrides) == {
        "architecture.array_k": 8 + 1, "architecture.array_n": 8 + 234, "architecture.clock_mhz": 8 + 567}
    (tmp_path / "typo.toml").write_text(text.replace('"architecture.clock_mhz"', '"architecture.clok_mhz"'))
    t = time.perf_counter()
    with pytest.raises(ConfigError, match="clok_mhz"):
        S.load_sweep(tmp_path / "typo.toml")
    assert time.perf_counter() - t < 1.0


def test_lazy_points_match_the_product_order(project):
    import itertools
    spec = S.load_sweep(project / "sweep.toml")
    expected = [(m.name, b, a) for m, b, a in itertools.product(spec.models, spec.batches, list(spec.accels))]
    assert [(p.model.name, p.batch, p.accel) for p in spec.points] == expected
    assert [p.index for p in spec.points] == list(range(len(expected)))


def test_dry_run_plans_without_running(project):
    r = run_cli("sweep", str(project / "sweep.toml"), "--dry-run", "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert "40 points in" in r.stderr and "estimated run time" in r.stderr and "us/point" in r.stderr
    assert not (project / "sweep-results.csv").exists() and not (project / "sweep-results.parts").exists()


def test_columns_and_csv_limit(project, monkeypatch):
    from fodlam import cli
    r = run_cli("sweep", str(project / "sweep.toml"), "--columns", "minimal", "--no-cache", "-q")
    assert r.returncode == 0, r.stderr
    header = (project / "sweep-results.csv").read_text().splitlines()[0].split(",")
    assert "energy_j" in header and "architecture.array_k" in header and "energy_j_conv" not in header
    rows = S.read_results(project / "sweep-results.parquet")
    assert len(rows) == 40 and "energy_j_conv" not in rows[0]
    r = run_cli("sweep", str(project / "sweep.toml"), "--columns", "energy_j,bogus", "--no-cache")
    assert r.returncode == 2 and "no column 'bogus'" in r.stderr
    (project / "sweep-results.csv").unlink()
    monkeypatch.setattr(cli.sweep, "CSV_LIMIT", 10)
    r = run_cli("sweep", str(project / "sweep.toml"), "--no-cache", "-q")
    assert r.returncode == 0 and "the CSV is not written" in r.stderr
    assert not (project / "sweep-results.csv").exists() and (project / "sweep-results.parquet").exists()
    r = run_cli("sweep", str(project / "sweep.toml"), "--no-cache", "-q", "--csv")
    assert r.returncode == 0 and (project / "sweep-results.csv").exists()


def test_parts_are_the_unit_of_output(project):
    cache = project / "parts"
    res = S.run(S.load_sweep(project / "sweep.toml"), jobs=2, cache_path=cache, quiet=True, chunk_size=3)
    assert sum(ref.rows for ref in res.chunks) == 40 == len(res.rows)
    assert [r["point"] for r in res.rows] == list(range(40))
    parts = sorted(cache.glob("*.parquet"))
    assert len(parts) == len(res.chunks) and not list(cache.glob("*.tmp"))


def test_a_ray_sweep_starts_ray_once_and_keeps_the_drivers_signal_handlers(project, monkeypatch):
    """Two models: one Ray session for the whole sweep (not one per model and batch), and
    Ray's shutdown does not leave SIGTERM at its default (which would end the driver before
    it writes its outputs)."""
    pytest.importorskip("ray")
    import signal

    from fodlam.sweeps import ray_backend

    spec = S.load_sweep(project / "sweep.toml")
    assert len(spec.models) >= 2
    started = []
    real_start = ray_backend.start
    monkeypatch.setattr(ray_backend, "start", lambda *a, **k: started.append(real_start(*a, **k))
                        or started[-1])
    mine = signal.signal(signal.SIGTERM, lambda *a: None)
    try:
        with S.on_signals():
            res = S.run(spec, jobs=2, backend="ray", quiet=True)
            installed = _sigterm_action()
        assert started.count(True) == 1 and not res.failed
        assert installed not in (0, None), "SIGTERM left at its default after the sweep"
    finally:
        signal.signal(signal.SIGTERM, mine)


def _sigterm_action():
    """The process's SIGTERM action as the kernel holds it (``signal.getsignal`` shows only
    what Python last set, not what a C library set since): 0 is the default."""
    import ctypes

    class SigAction(ctypes.Structure):
        _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16),
                    ("flags", ctypes.c_int), ("restorer", ctypes.c_void_p)]
    action = SigAction()
    assert ctypes.CDLL(None).sigaction(15, None, ctypes.byref(action)) == 0
    return action.handler


def test_a_stop_request_is_not_absorbed_as_a_model_failure():
    """SIGTERM while a model's own code runs (its import in a sweep) stops the sweep; it is
    not user code's KeyboardInterrupt, which only fails that model."""
    from fodlam.errors import UserCodeError, guard_user_code

    def raises(e):
        raise e
    with pytest.raises(S.Interrupted):
        guard_user_code("models.py:mlp()", raises, S.Interrupted(15))
    with pytest.raises(UserCodeError, match="KeyboardInterrupt"):
        guard_user_code("models.py:mlp()", raises, KeyboardInterrupt())


def test_a_signal_while_the_workers_stop_marks_the_sweep_interrupted(project, monkeypatch):
    """SIGTERM as the pool shuts down (every chunk done): the result says interrupted and
    holds every row; the signal does not escape run() before the outputs are written."""
    import os
    import signal
    from concurrent import futures

    spec = S.load_sweep(project / "sweep.toml")
    real = futures.ProcessPoolExecutor.shutdown

    def shutdown(self, *a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *a, **k)
    monkeypatch.setattr(futures.ProcessPoolExecutor, "shutdown", shutdown)
    with S.on_signals():
        res = S.run(spec, jobs=2, quiet=True, log=lambda msg: None)
    assert res.interrupted == signal.SIGTERM
    assert sum(ref.rows for ref in res.chunks) == len(spec.points)
