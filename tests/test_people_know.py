"""The tool people already know how to use (issue 28): tests that pass wherever the
checkout is, Unix outputs, notebook and REPL display, a module tree, a complete DataFrame
and CSV, accelerators side by side, `fodlam check` from a subfolder."""

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

torch = pytest.importorskip("torch")
nn = torch.nn

import fodlam  # noqa: E402


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 8, 10))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture
def model_file(tmp_path):
    f = tmp_path / "tiny_model.py"
    f.write_text("import torch.nn as nn\n"
                 "def make():\n"
                 "    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),\n"
                 "                         nn.Linear(8 * 8 * 8, 10))\n")
    return f


# ---- 1. wherever the checkout is -------------------------------------------------------------

def test_the_suite_runs_from_a_checkout_under_the_temporary_directory(tmp_path):
    """A clone under the temporary directory (where the CLI helper used to forget every
    module it found there) runs the budget tests, which used to abort the interpreter."""
    import shutil

    clone = tmp_path / "clone"
    # a copy of the working tree (tracked and new files), as a checkout would lay it
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True)
    if files.returncode:
        pytest.skip(f"git ls-files failed: {files.stderr.strip()}")
    for rel in files.stdout.splitlines():
        src = ROOT / rel
        if src.is_symlink():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(src), clone / rel)
        elif src.is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / rel)
    subprocess.run(["git", "init", "-q"], cwd=clone)
    env = dict(os.environ, PYTHONPATH=str(clone))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                        "tests/test_budgets.py"], cwd=clone, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert " passed" in r.stdout


# ---- 2. Unix outputs ----------------------------------------------------------------------

@pytest.mark.parametrize("target", ["-", "/dev/stdout"])
def test_output_to_standard_output(model_file, target):
    r = run_cli("torch", f"{model_file}:make", "--input-shape", "1,3,8,8", "--format", "json",
                "-o", target)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total"]["macs"] > 0


def test_output_to_dev_null_and_a_fifo(model_file, tmp_path):
    r = run_cli("torch", f"{model_file}:make", "--input-shape", "1,3,8,8", "--format", "json",
                "-o", "/dev/null")
    assert r.returncode == 0, r.stderr
    assert Path("/dev/null").exists() and not Path("/dev/null").is_file()   # still a device
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # the writer in its own process (an open of a FIFO waits for its reader), both bounded
    writer = subprocess.Popen([sys.executable, "-c", "import sys; from fodlam.cli import main; "
                               "sys.exit(main(sys.argv[1:]))", "torch", f"{model_file}:make",
                               "--input-shape", "1,3,8,8", "--format", "csv", "-o", str(fifo)],
                              stderr=subprocess.PIPE, text=True)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    chunks, deadline = [], time.time() + 120
    try:
        while time.time() < deadline:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                data = None
            if data:
                chunks.append(data)
            elif data == b"" and writer.poll() is not None:
                break
            else:
                time.sleep(0.05)
    finally:
        os.close(fd)
    assert writer.wait(timeout=60) == 0, writer.stderr.read()
    assert b"".join(chunks).decode().splitlines()[0].startswith("name,")


def test_a_directory_is_still_refused(model_file, tmp_path):
    r = run_cli("torch", f"{model_file}:make", "--input-shape", "1,3,8,8", "-o", str(tmp_path))
    assert r.returncode == 2 and "directory" in r.stderr


def test_the_onnx_example_script_runs(tmp_path):
    r = subprocess.run(["bash", str(ROOT / "examples" / "onnx_end_to_end.sh"), str(tmp_path)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "within the 200 mJ budget" in r.stdout
    assert (tmp_path / "resnet50.json").is_file()


# ---- 3. summary first -----------------------------------------------------------------------

def test_repr_is_one_line_and_notebooks_get_a_styled_summary():
    from examples import zoo

    p = fodlam.profile(zoo.resnet50(), (1, 3, 224, 224))
    r = repr(p)
    assert "\n" not in r and len(r) < 300 and "ResNet" in r and "MACs" in r
    assert len(repr((p.total_energy_j, p.total_latency_s, p.top(5)))) < 4000
    html = p._repr_html_()
    assert "<style>" in html and f"top 10 of {len(p.nodes)} nodes" in html and "bound" in html
    md = p._repr_markdown_()
    assert md.startswith("**FODLAM profile of") and f"top 10 of {len(p.nodes)}" in md
    assert str(p).splitlines()[0].startswith("FODLAM profile of")     # print() gives the table


def test_generation_and_sweep_results_display_briefly(tmp_path):
    T = pytest.importorskip("transformers")
    cfg = T.LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    gen = fodlam.generate_profile(T.LlamaForCausalLM(cfg), prompt_len=8, new_tokens=4)
    assert "\n" not in repr(gen) and len(repr(gen)) < 300 and "tokens/s" in repr(gen)
    assert "<table>" in gen._repr_html_() and gen._repr_markdown_().startswith("**")
    (tmp_path / "m.py").write_text("import torch.nn as nn\ndef make():\n    return nn.Linear(8, 8)\n")
    (tmp_path / "s.toml").write_text('[[models]]\ntorch = "m.py:make"\ninput_shape = [4, 8]\n'
                                     '[[accelerators]]\nprofile = "tpu-v1"\n'
                                     'grid = { "architecture.clock_mhz" = [500, 700] }\n')
    res = fodlam.sweep(tmp_path / "s.toml", jobs=1)
    assert "\n" not in repr(res) and "2 points" in repr(res)
    assert "<table>" in res._repr_html_()


# ---- 4. a module tree --------------------------------------------------------------------------

def test_module_tree_with_a_depth(model_file):
    p = fodlam.profile(Tiny(), (1, 3, 8, 8))
    tree = p.summary(depth=1)
    lines = tree.splitlines()
    assert lines[1].split()[:7] == ["module", "type", "params", "input", "output", "MACs", "energy"]
    body = "\n".join(lines[3:])
    assert "features" in body and "Sequential" in body and "head" in body
    params = 3 * 8 * 9 + 8 * 8 * 9 + 8 * 8 * 8 * 10          # the weights the MAC layers use
    assert f"{params / 1e3:.3g} k" in tree or str(params) in tree
    deep = p.summary(depth=2)
    assert "Conv2d" in deep and "Linear" in deep and "1x3x8x8" in deep and "1x10" in deep
    r = run_cli("torch", f"{model_file}:make", "--input-shape", "1,3,8,8", "--format", "table",
                "--depth", "1")
    assert r.returncode == 0 and "module" in r.stdout.splitlines()[1] and "Conv2d" in r.stdout


def test_leaf_names_are_readable():
    class Attn(nn.Module):
        def forward(self, q):
            return torch.nn.functional.scaled_dot_product_attention(q, q, q)

    p = fodlam.profile(Attn(), (1, 2, 16, 8))
    assert "attention" in p.summary(depth=1)
    assert any("scaled_dot_product" in n.op for n in p.nodes)       # the JSON keeps the kernel


# ---- 5. a complete DataFrame and CSV -------------------------------------------------------------

def test_dataframe_and_csv_carry_the_json_figures():
    pd = pytest.importorskip("pandas")
    p = fodlam.profile(Tiny(), (1, 3, 8, 8), accelerator="nvdla-nv-full")
    df = p.to_pandas()
    for col in ("engine", "bound", "cycles", "dram_bytes", "sram_bytes", "module", "module_type",
                "fused_into", "energy_j_lo", "energy_j_hi", "latency_s_lo", "latency_s_hi"):
        assert col in df.columns, col
    data = json.loads(p.to_json())
    comps = {k for n in data["nodes"] for k in n.get("components", {})}
    assert {f"energy_{c}_j" for c in comps} <= set(df.columns)
    for row, node in zip(df.to_dict("records"), data["nodes"]):
        assert row["name"] == node["name"] and row["energy_j"] == node["energy_j"]
        assert row["engine"] == node.get("engine", "")
        assert (row["fused_into"] or None) == node.get("fused_into")
        for c in comps:
            assert row[f"energy_{c}_j"] == pytest.approx(node.get("components", {}).get(c, 0.0))
        if node["layers"] and node["layers"][0].get("mapping"):
            m = node["layers"][0]["mapping"]
            assert row["cycles"] == pytest.approx(m.get("cycles"))
    rows = list(csv.DictReader(io.StringIO(p.to_csv())))
    assert list(rows[0]) == list(df.columns) + ["how"]
    assert float(rows[0]["energy_j"]) == df["energy_j"][0]
    schema = (ROOT / "docs" / "profile-schema.md").read_text()
    for col in df.columns:
        if not col.startswith("energy_") or col in ("energy_j", "energy_j_lo", "energy_j_hi"):
            assert f"`{col}`" in schema, col


# ---- 6. accelerators side by side ------------------------------------------------------------

def test_accelerators_side_by_side(model_file, tmp_path):
    cmp = fodlam.profile(Tiny(), (1, 3, 8, 8), accelerator=["tpu-v1", "nvdla-nv-full"], batch=4)
    assert [p.accelerator["name"] for p in cmp.profiles] == ["tpu-v1", "nvdla-nv-full"]
    assert all(p.batch == 4 for p in cmp.profiles)
    assert cmp.best("latency_s").total_latency_s == min(p.total_latency_s for p in cmp.profiles)
    assert "\n" not in repr(cmp)
    r = run_cli("torch", f"{model_file}:make", "--input-shape", "1,3,8,8", "--accelerator",
                "tpu-v1,nvdla-nv-full,ethos-u55-128", "--batch", "2", "--format", "table",
                "--html", str(tmp_path / "cmp.html"))
    assert r.returncode == 0, r.stderr
    for name in ("tpu-v1", "nvdla-nv-full", "ethos-u55-128", "J/inference", "inferences/s",
                 "least energy"):
        assert name in r.stdout
    page = (tmp_path / "cmp.html").read_text()
    assert page.count("<h2>") == 3 and "top " in page
    r = run_cli("torch", f"{model_file}:make", "--input-shape", "1,3,8,8", "--accelerator",
                "tpu-v1,nvdla-nv-full", "--format", "json")
    data = json.loads(r.stdout)
    assert data["schema"] == "fodlam-comparison" and len(data["profiles"]) == 2
    r = run_cli("torch", f"{model_file}:make", "--input-shape", "1,3,8,8", "--accelerator",
                "tpu-v1,nvdla-nv-full", "--max-energy", "1 pJ")
    assert r.returncode == 1 and "tpu-v1:" in r.stderr and "nvdla-nv-full:" in r.stderr


# ---- 7. fodlam check from a subfolder --------------------------------------------------------

def test_check_finds_the_budget_file_above_and_names_layers(tmp_path):
    proj = tmp_path / "proj"
    (proj / "src" / "deep").mkdir(parents=True)
    (proj / "net.py").write_text("import torch.nn as nn\ndef make():\n"
                                 "    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())\n")
    (proj / "fodlam.toml").write_text('[[models]]\nname = "net"\ntorch = "net.py:make"\n'
                                      'input_shape = [1, 3, 16, 16]\nmax_energy = "1 pJ"\n')
    r = run_cli("check", cwd=proj / "src" / "deep")
    assert r.returncode == 1, r.stderr
    assert f"budgets from {(proj / 'fodlam.toml').resolve()}" in r.stderr
    assert "0 (0, Conv2d)" in r.stdout + r.stderr or "(Conv2d)" in r.stdout + r.stderr
    r = run_cli("check", cwd=tmp_path)
    assert r.returncode == 2 and "any folder above it" in r.stderr


# ---- 8. extras, shapes and arguments ----------------------------------------------------------

def test_no_parquet_works_without_pyarrow(tmp_path):
    (tmp_path / "m.py").write_text("import torch.nn as nn\ndef make():\n    return nn.Linear(8, 8)\n")
    (tmp_path / "s.toml").write_text('[[models]]\ntorch = "m.py:make"\ninput_shape = [4, 8]\n'
                                     '[[accelerators]]\nprofile = "tpu-v1"\n'
                                     'grid = { "architecture.clock_mhz" = [500, 700] }\n')
    block = "import sys; sys.modules['pyarrow'] = None\nfrom fodlam.cli import main\n"
    run = [sys.executable, "-c", block + "sys.exit(main(sys.argv[1:]))", "sweep", "s.toml"]
    r = subprocess.run(run + ["--no-parquet", "-q"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "s-results.csv").read_text().splitlines()) == 3
    assert list((tmp_path / "s-results.parts").glob("*.jsonl"))
    r = subprocess.run(run + ["-q"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "fodlam[sweep]" in r.stderr and "--no-parquet" in r.stderr


def test_input_shape_rank_mismatch_is_one_line(model_file):
    r = run_cli("torch", f"{model_file}:make", "--input-shape", "3,8,8")
    assert r.returncode == 2 and "\n" not in r.stderr.strip()
    assert "3x8x8" in r.stderr.replace(" ", "") or "(3, 8, 8)" in r.stderr
    assert "4" in r.stderr and "Conv2d" in r.stderr


def test_a_wrong_argument_type_is_named_not_printed():
    with pytest.raises(fodlam.FodlamError) as e:
        fodlam.profile(Tiny(), torch.zeros(1, 3, 8, 8))
    assert "Tensor" in str(e.value) and len(str(e.value)) < 300 and "tensor(" not in str(e.value)


def test_readme_and_docs_tell_one_install_story():
    readme = (ROOT / "README.md").read_text()
    assert "not published" in readme or "not on PyPI" in readme
    assert "pip install fodlam[torch,onnx]" not in readme.replace("`", "")


# ---- 9. report polish ----------------------------------------------------------------------------

def _boxes(fig, texts):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in texts if t.get_visible() and t.get_text()]


def _no_two_intersect(boxes):
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1), (a, b)


@pytest.mark.parametrize("n", [3, 12, 40])
def test_no_overlapping_labels_at_any_number_of_components(monkeypatch, n):
    pytest.importorskip("matplotlib")
    from fodlam.report import plots

    p = fodlam.profile(Tiny(), (1, 3, 8, 8), accelerator="ethos-u55-128")
    many = {f"component_with_a_long_name_{i}": float(i + 1) for i in range(n)}
    monkeypatch.setattr(plots, "component_totals", lambda profile: many)
    fig = plots.figure_summary(p)
    for ax in fig.axes:
        labels = list(ax.get_yticklabels()) + list(ax.get_xticklabels())
        _no_two_intersect(_boxes(fig, labels))
        _no_two_intersect(_boxes(fig, ax.texts))
        legend = ax.get_legend()
        if legend is not None:       # outside the data: below the axes
            renderer = fig.canvas.get_renderer()
            box = legend.get_window_extent(renderer)
            assert box.y1 <= ax.get_window_extent(renderer).y0 + 1


def test_the_llm_page_legend_is_outside_the_bars(tmp_path):
    pytest.importorskip("matplotlib")
    T = pytest.importorskip("transformers")
    from matplotlib.figure import Figure

    from fodlam.report import html, plots

    cfg = T.LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    gen = fodlam.generate_profile(T.LlamaForCausalLM(cfg), prompt_len=8, new_tokens=4)
    figs = []
    real = plots.png_bytes

    def keep(fig, dpi=110):
        figs.append(fig)
        return real(fig, dpi)
    plots.png_bytes, saved = keep, plots.png_bytes
    try:
        page = html.render_generation(gen)
    finally:
        plots.png_bytes = saved
    assert "<img" in page and figs and isinstance(figs[0], Figure)
    fig = figs[0]
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            assert legend.get_window_extent(renderer).y1 <= ax.get_window_extent(renderer).y0 + 1
